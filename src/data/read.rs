//! Reading the tables of a customer-base directory with polars, and validating every cell.

use super::*;
use crate::time::parse_ts;
use crate::{Error, Result};
use polars::io::parquet::metadata::FileMetadataRef;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// How strict a load is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Count and skip unparseable rows instead of stopping at the first one.
    pub skip_bad_rows: bool,
}

/// Where a table comes from: one file or a directory of Parquet parts.
#[derive(Debug, Clone)]
struct Source {
    table: Table,
    parts: Vec<PathBuf>,
}

/// One part of a table, read into memory.
struct Part {
    table: Table,
    file: String,
    df: DataFrame,
}

/// Collects bad cells; stops at the first one unless skipping.
struct Errs {
    skip: bool,
    table: Table,
    file: String,
    /// 0-based file row of the first row of the frame being checked.
    offset: usize,
    /// The check running now (checks run column by column, in a fixed order).
    phase: usize,
    /// Row of the frame -> whether it has a problem already.
    bad: Vec<bool>,
    /// The first problem of each bad row, with the check that found it; at most 20 per check.
    list: Vec<(usize, BadRow)>,
    /// Examples kept per check.
    kept: Vec<usize>,
    count: usize,
}

/// Bad-row examples kept per table file.
const EXAMPLES: usize = 20;

impl Errs {
    fn new(part: &Part, skip: bool) -> Self {
        Errs {
            skip,
            table: part.table,
            file: part.file.clone(),
            offset: 0,
            phase: 0,
            bad: vec![false; part.df.height()],
            list: Vec::new(),
            kept: Vec::new(),
            count: 0,
        }
    }

    /// Starts checking the next frame of the same file, whose first row is file row `offset`.
    fn next_batch(&mut self, part: &Part, offset: usize) {
        self.offset = offset;
        self.phase = 0;
        self.bad.clear();
        self.bad.resize(part.df.height(), false);
    }

    /// The following problems come from the next check.
    fn next_check(&mut self) {
        self.phase += 1;
    }

    fn add(&mut self, row: usize, column: &str, message: String) -> Result<()> {
        let file_row = self.offset + row + 1;
        if !self.skip {
            return Err(Error::BadValue {
                table: self.table.name().to_string(),
                file: self.file.clone(),
                row: file_row,
                column: column.to_string(),
                message,
            });
        }
        if !self.bad[row] {
            self.bad[row] = true;
            self.count += 1;
            let phase = self.phase;
            if self.kept.len() <= phase {
                self.kept.resize(phase + 1, 0);
            }
            if self.kept[phase] < EXAMPLES {
                self.kept[phase] += 1;
                self.list.push((
                    phase,
                    BadRow {
                        table: self.table.name().to_string(),
                        file: self.file.clone(),
                        row: file_row,
                        column: column.to_string(),
                        message,
                    },
                ));
            }
        }
        Ok(())
    }

    /// The first 20 examples in the order a check of the whole file at once finds them:
    /// check by check, each in row order.
    fn examples(mut self) -> Vec<BadRow> {
        self.list.sort_by_key(|(phase, b)| (*phase, b.row));
        self.list.truncate(EXAMPLES);
        self.list.into_iter().map(|(_, b)| b).collect()
    }
}

/// Loads and validates the customer base in `dir` (see `shared/data-contract.md`).
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<CustomerBase> {
    load_in_batches(dir, opts, BATCH_ROWS)
}

/// [`load`], reading Parquet activity tables in batches of about `batch_rows` rows.
fn load_in_batches(dir: &Path, opts: &LoadOptions, batch_rows: usize) -> Result<CustomerBase> {
    let (sources, ignored) = discover(dir)?;
    let mut summary = Summary {
        directory: dir.display().to_string(),
        ignored_files: ignored,
        ..Summary::default()
    };
    let find = |t: Table| sources.iter().find(|s| s.table == t);
    let customers_src = find(Table::Customers).ok_or_else(|| {
        Error::Data(format!(
            "{}: no `customers` table (customers.csv, customers.parquet or a customers/ directory of Parquet parts); it is the one required table",
            dir.display()
        ))
    })?;
    let parts = read_parts(customers_src)?;
    let (customers, cust_summary, bad_examples) = read_customers(parts, opts)?;
    for &t in &customers.signup {
        summary.widen(t);
    }
    summary.customers = customers.len();
    summary.tables.push(cust_summary);
    summary.bad_row_examples.extend(bad_examples);

    let n = customers.len();
    let mut base = CustomerBase {
        customers,
        ..CustomerBase::default()
    };
    // One table at a time: each is grouped (and its frame and row vectors freed) before
    // the next is read, which bounds peak memory on large bases. Reading, conversion and
    // grouping each use every core.
    for t in [
        Table::Logins,
        Table::Tickets,
        Table::Orders,
        Table::Events,
        Table::Churn,
    ] {
        let Some(src) = find(t) else {
            summary.missing_tables.push(t.name().to_string());
            continue;
        };
        let act = read_activity(src, &base.customers.index, n, opts, batch_rows)?;
        if let Some((a, b)) = act.range {
            summary.widen(a);
            summary.widen(b);
        }
        summary.tables.push(act.summary);
        for b in act.bad_examples {
            if summary.bad_row_examples.len() < 20 {
                summary.bad_row_examples.push(b);
            }
        }
        match act.rows {
            Grouping::Logins(g) => base.logins = Some(g),
            Grouping::Tickets(g) => base.tickets = Some(g),
            Grouping::Orders(g) => base.orders = Some(g),
            Grouping::Events(g, types) => {
                base.events = Some(g);
                base.event_types = types;
            }
            Grouping::Churn(g) => base.churn = Some(g),
        }
    }
    base.summary = summary;
    Ok(base)
}

/// Finds the table files of `dir`; returns them and the names of ignored files.
fn discover(dir: &Path) -> Result<(Vec<Source>, Vec<String>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut sources: Vec<Source> = Vec::new();
    let mut ignored = Vec::new();
    let mut names: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    for (name, path) in names {
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) => (s, e.to_ascii_lowercase()),
            None => (name.as_str(), String::new()),
        };
        let table = if path.is_dir() {
            Table::from_name(&name)
        } else if ext == "csv" || ext == "parquet" {
            Table::from_name(stem)
        } else {
            None
        };
        let Some(table) = table else {
            ignored.push(name);
            continue;
        };
        if let Some(prev) = sources.iter().find(|s| s.table == table) {
            return Err(Error::Data(format!(
                "table `{}` is given twice: {} and {}; keep one",
                table.name(),
                prev.parts[0].display(),
                path.display()
            )));
        }
        let parts = if path.is_dir() {
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| Error::io(&path, e))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    !n.starts_with('_')
                        && !n.starts_with('.')
                        && (n.ends_with(".parquet") || n.ends_with(".csv"))
                })
                .collect();
            parts.sort();
            if parts.is_empty() {
                return Err(Error::Data(format!(
                    "table `{}`: directory {} holds no .parquet or .csv parts",
                    table.name(),
                    path.display()
                )));
            }
            parts
        } else {
            vec![path]
        };
        sources.push(Source { table, parts });
    }
    Ok((sources, ignored))
}

fn read_parts(src: &Source) -> Result<Vec<Part>> {
    src.parts
        .iter()
        .map(|p| {
            Ok(Part {
                table: src.table,
                file: p.display().to_string(),
                df: read_file(p)?,
            })
        })
        .collect()
}

/// Reads one CSV (every column as text, parsed by us for precise errors) or Parquet file.
fn read_file(path: &Path) -> Result<DataFrame> {
    let ctx = || format!("reading {}", path.display());
    let is_csv = super::is_csv(path);
    if is_csv {
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| Error::polars(ctx(), e))
    } else {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        ParquetReader::new(file)
            .finish()
            .map_err(|e| Error::polars(ctx(), e))
    }
}

fn has(df: &DataFrame, col: &str) -> bool {
    df.get_column_names().iter().any(|c| c.as_str() == col)
}

fn require(part: &Part, cols: &[&str]) -> Result<()> {
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

fn polars_err<'a>(part: &'a Part, col: &str) -> impl Fn(PolarsError) -> Error + 'a {
    let ctx = format!(
        "table `{}` ({}), column `{col}`",
        part.table.name(),
        part.file
    );
    move |e| Error::polars(ctx.clone(), e)
}

/// A column as optional strings (non-string columns are cast to text).
fn strings(part: &Part, col: &str) -> Result<StringChunked> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    let s = if matches!(s.dtype(), DataType::String) {
        s.clone()
    } else {
        s.cast(&DataType::String).map_err(polars_err(part, col))?
    };
    Ok(s.str().map_err(polars_err(part, col))?.clone())
}

/// A timestamp column: text in one of the three contract forms, or a Parquet date/datetime.
/// Marks an empty or bad timestamp cell (8 bytes per row instead of 16 for `Option`).
const MISSING: Ts = Ts::MIN;

/// A timestamp column; [`MISSING`] where empty or bad.
fn timestamps(part: &Part, col: &str, errs: &mut Errs) -> Result<Vec<Ts>> {
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
        DataType::Datetime(unit, _) => {
            let per_sec = match unit {
                TimeUnit::Nanoseconds => 1_000_000_000,
                TimeUnit::Microseconds => 1_000_000,
                TimeUnit::Milliseconds => 1_000,
            };
            let phys = s.to_physical_repr();
            let ca = phys.i64().map_err(polars_err(part, col))?;
            Ok(ca
                .iter()
                .map(|v| v.map_or(MISSING, |v| v.div_euclid(per_sec)))
                .collect())
        }
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

/// A numeric column: numbers, or text holding numbers; NaN where empty or bad
/// (non-finite input is refused, so NaN only ever means "no value").
fn numbers(part: &Part, col: &str, errs: &mut Errs) -> Result<Vec<f64>> {
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

fn read_customers(
    parts: Vec<Part>,
    opts: &LoadOptions,
) -> Result<(Customers, TableSummary, Vec<BadRow>)> {
    let mut customers = Customers::default();
    let mut summary = TableSummary {
        table: "customers".into(),
        ..TableSummary::default()
    };
    let mut examples = Vec::new();
    // (part, row) of each id, to name both rows of a duplicate.
    let mut first_seen: HashMap<String, (usize, usize), std::hash::BuildHasherDefault<FxHasher>> =
        HashMap::default();
    let mut attr_names: Vec<String> = Vec::new();
    let mut attr_raw: Vec<Vec<AttrCell>> = Vec::new();
    for (pi, part) in parts.iter().enumerate() {
        summary.files.push(part.file.clone());
        require(part, &["customer_id", "signup_at"])?;
        let mut errs = Errs::new(part, opts.skip_bad_rows);
        let ids = strings(part, "customer_id")?;
        for (i, v) in ids.iter().enumerate() {
            if v.map(str::trim).is_none_or(str::is_empty) {
                errs.add(i, "customer_id", "empty customer_id".into())?;
            }
        }
        errs.next_check();
        let signup = timestamps(part, "signup_at", &mut errs)?;
        errs.next_check();
        for (i, s) in signup.iter().enumerate() {
            if *s == MISSING && !errs.bad[i] {
                errs.add(i, "signup_at", "empty signup_at (required)".into())?;
            }
        }
        // Extra columns are attributes, kept as numbers when the column is numeric.
        let extra: Vec<String> = part
            .df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .filter(|c| c != "customer_id" && c != "signup_at")
            .collect();
        let mut cols: Vec<Vec<AttrCell>> = Vec::new();
        for name in &extra {
            cols.push(attr_cells(part, name)?);
        }
        for (i, id) in ids.iter().enumerate() {
            if errs.bad[i] {
                continue;
            }
            let id = id.map(str::trim).unwrap_or_default().to_string();
            if let Some(&(pj, row)) = first_seen.get(&id) {
                return Err(Error::Data(format!(
                    "table `customers` ({}), row {}, column `customer_id`: duplicate customer_id `{id}` (first at row {} of {})",
                    part.file,
                    i + 1,
                    row + 1,
                    parts[pj].file
                )));
            }
            first_seen.insert(id.clone(), (pi, i));
            let idx = customers.ids.len() as u32;
            customers.index.insert(id.clone(), idx);
            customers.ids.push(id);
            customers.signup.push(signup[i]);
            for (k, name) in extra.iter().enumerate() {
                let pos = match attr_names.iter().position(|n| n == name) {
                    Some(p) => p,
                    None => {
                        attr_names.push(name.clone());
                        attr_raw.push(vec![AttrCell::Empty; idx as usize]);
                        attr_names.len() - 1
                    }
                };
                attr_raw[pos].push(cols[k][i].clone());
            }
            for col in attr_raw.iter_mut() {
                col.resize(idx as usize + 1, AttrCell::Empty);
            }
        }
        summary.bad_rows += errs.count;
        examples.extend(errs.examples());
    }
    summary.rows = customers.len();
    customers.attributes = attr_names
        .into_iter()
        .zip(attr_raw)
        .map(|(n, cells)| (n, attribute(cells)))
        .collect();
    Ok((customers, summary, examples))
}

#[derive(Debug, Clone)]
enum AttrCell {
    Empty,
    Num(f64),
    Text(String),
}

fn attr_cells(part: &Part, col: &str) -> Result<Vec<AttrCell>> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    if s.dtype().is_primitive_numeric() {
        let f = s.cast(&DataType::Float64).map_err(polars_err(part, col))?;
        Ok(f.f64()
            .map_err(polars_err(part, col))?
            .iter()
            .map(|v| {
                v.filter(|x| x.is_finite())
                    .map_or(AttrCell::Empty, AttrCell::Num)
            })
            .collect())
    } else {
        Ok(strings(part, col)?
            .iter()
            .map(|v| match v.map(str::trim).filter(|v| !v.is_empty()) {
                None => AttrCell::Empty,
                Some(v) => AttrCell::Text(v.to_string()),
            })
            .collect())
    }
}

/// A column is numeric when every non-empty cell is a number.
fn attribute(cells: Vec<AttrCell>) -> Attribute {
    let numeric = cells.iter().all(|c| match c {
        AttrCell::Empty | AttrCell::Num(_) => true,
        AttrCell::Text(t) => t.parse::<f64>().is_ok_and(f64::is_finite),
    });
    if numeric {
        Attribute::Numeric(
            cells
                .into_iter()
                .map(|c| match c {
                    AttrCell::Empty => f64::NAN,
                    AttrCell::Num(x) => x,
                    AttrCell::Text(t) => t.parse().unwrap_or(f64::NAN),
                })
                .collect(),
        )
    } else {
        Attribute::Categorical(
            cells
                .into_iter()
                .map(|c| match c {
                    AttrCell::Empty => None,
                    AttrCell::Num(x) => Some(x.to_string()),
                    AttrCell::Text(t) => Some(t),
                })
                .collect(),
        )
    }
}

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
enum Grouping {
    Logins(Grouped<Ts>),
    Tickets(Grouped<Ticket>),
    Orders(Grouped<Order>),
    Events(Grouped<Event>, Vec<String>),
    Churn(Grouped<Ts>),
}

struct Activity {
    rows: Grouping,
    summary: TableSummary,
    bad_examples: Vec<BadRow>,
    range: Option<(Ts, Ts)>,
}

const ORPHAN: u32 = u32::MAX;

/// Customer indexes of a part's rows; `ORPHAN` for unknown customers, bad cells reported.
fn customer_ids(part: &Part, index: &IdIndex, errs: &mut Errs) -> Result<Vec<u32>> {
    use rayon::prelude::*;
    const EMPTY: u32 = u32::MAX - 1;
    let ids = strings(part, "customer_id")?;
    // Look ids up chunk by chunk on every core (Parquet row groups arrive as chunks).
    let chunks: Vec<_> = ids.downcast_iter().collect();
    let looked_up: Vec<Vec<u32>> = chunks
        .par_iter()
        .map(|arr| {
            arr.iter()
                .map(|v| match v.map(str::trim).filter(|v| !v.is_empty()) {
                    None => EMPTY,
                    Some(id) => index.get(id).copied().unwrap_or(ORPHAN),
                })
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

/// Rows per batch when a Parquet file is read in slices of whole row groups: memory
/// holds one batch's frame (and its converted columns) at a time, not the whole table.
const BATCH_ROWS: usize = 1 << 21;

/// The columns of one activity table's file, and how to read it in batches.
struct BatchFile {
    /// Every column of the file, in file order.
    names: Vec<String>,
    /// CSV: the whole file, read at once (every column as text).
    csv: Option<DataFrame>,
    /// Parquet: the file metadata and the row ranges `(first row, rows)` of the batches.
    parquet: Option<(FileMetadataRef, Vec<(usize, usize)>)>,
}

impl BatchFile {
    /// Opens `path`; Parquet batches hold whole row groups, about `batch_rows` rows.
    fn open(path: &Path, batch_rows: usize) -> Result<BatchFile> {
        let is_csv = super::is_csv(path);
        if is_csv {
            // CSV is read whole (every column as text): one batch.
            let df = read_file(path)?;
            let names = df
                .get_column_names()
                .iter()
                .map(|c| c.to_string())
                .collect();
            return Ok(BatchFile {
                names,
                csv: Some(df),
                parquet: None,
            });
        }
        let ctx = || format!("reading {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = ParquetReader::new(file);
        let names = reader
            .schema()
            .map_err(|e| Error::polars(ctx(), e))?
            .iter_names()
            .map(|c| c.to_string())
            .collect();
        let metadata = reader
            .get_metadata()
            .map_err(|e| Error::polars(ctx(), e))?
            .clone();
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
            csv: None,
            parquet: Some((metadata, ranges)),
        })
    }

    /// Reads the columns `wanted` that the file has, batch by batch: `f(first row, frame)`.
    /// A file without rows still gives one (empty) frame.
    fn for_each(
        self,
        path: &Path,
        wanted: &[&str],
        mut f: impl FnMut(usize, DataFrame) -> Result<()>,
    ) -> Result<()> {
        let Some((metadata, ranges)) = &self.parquet else {
            return f(0, self.csv.unwrap_or_default());
        };
        let columns: Vec<String> = wanted
            .iter()
            .filter(|w| self.names.iter().any(|n| n == *w))
            .map(|w| w.to_string())
            .collect();
        let read = |slice: (usize, usize)| -> Result<DataFrame> {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = ParquetReader::new(file)
                .with_columns(Some(columns.clone()))
                .with_slice(Some(slice));
            reader.set_metadata(metadata.clone());
            reader
                .finish()
                .map_err(|e| Error::polars(format!("reading {}", path.display()), e))
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
fn read_activity(
    src: &Source,
    index: &IdIndex,
    n: usize,
    opts: &LoadOptions,
    batch_rows: usize,
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
    // Rows to expect: Parquet footers say (CSV files are only counted when read).
    let expected: usize = src
        .parts
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter_map(|p| {
            let file = std::fs::File::open(p).ok()?;
            ParquetReader::new(file).num_rows().ok()
        })
        .sum();
    let mut rows = match table {
        Table::Logins => Rows::Logins(Grouper::with_capacity(n, expected)),
        Table::Tickets => Rows::Tickets(Grouper::with_capacity(n, expected)),
        Table::Orders => Rows::Orders(Grouper::with_capacity(n, expected)),
        Table::Events => Rows::Events(Grouper::with_capacity(n, expected), Vec::new()),
        Table::Churn => Rows::Churn(Vec::new(), Vec::new()),
        Table::Customers => unreachable!("customers are read by read_customers"),
    };
    let mut type_index = IdIndex::default();
    let (required, optional) = activity_columns(table);
    let wanted: Vec<&str> = required.iter().chain(&optional).copied().collect();
    for path in &src.parts {
        let file = path.display().to_string();
        summary.files.push(file.clone());
        let batches = BatchFile::open(path, batch_rows)?;
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
        let mut errs = Errs::new(&header, opts.skip_bad_rows);
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
            return Err(first_error(src.table, path, index, opts).unwrap_or(e));
        }
        summary.bad_rows += errs.count;
        examples.extend(errs.examples());
    }
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
        Grouping::Logins(g) | Grouping::Churn(g) => g.len(),
        Grouping::Tickets(g) => g.len(),
        Grouping::Orders(g) => g.len(),
        Grouping::Events(g, _) => g.len(),
    };
    Ok(Activity {
        rows,
        summary,
        bad_examples: examples,
        range,
    })
}

/// The error a check of the whole file `path` at once stops at (reading it whole).
fn first_error(table: Table, path: &Path, index: &IdIndex, opts: &LoadOptions) -> Option<Error> {
    let part = Part {
        table,
        file: path.display().to_string(),
        df: read_file(path).ok()?,
    };
    let mut errs = Errs::new(&part, opts.skip_bad_rows);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `df` as Parquet with `rows_per_group` rows in each row group.
    fn parquet(dir: &Path, name: &str, mut df: DataFrame, rows_per_group: usize) {
        let file = std::fs::File::create(dir.join(format!("{name}.parquet"))).unwrap();
        ParquetWriter::new(file)
            .with_row_group_size(Some(rows_per_group))
            .finish(&mut df)
            .unwrap();
    }

    fn col(name: &str, v: Vec<Option<&str>>) -> Column {
        Column::new(name.into(), v)
    }

    fn strs<'a>(v: &[&'a str]) -> Vec<Option<&'a str>> {
        v.iter().map(|s| Some(*s)).collect()
    }

    /// A base with every activity table, its rows in no particular customer order, one
    /// orphan row and ties in time.
    fn base(dir: &Path) {
        let customers = DataFrame::new(
            5,
            vec![
                col("customer_id", strs(&["a", "b", "c", "d", "e"])),
                col("signup_at", vec![Some("2024-01-01"); 5]),
                col(
                    "plan",
                    vec![Some("pro"), None, Some("basic"), Some("pro"), Some("x")],
                ),
            ],
        )
        .unwrap();
        parquet(dir, "customers", customers, 2);
        let ids = strs(&[
            "c", "a", "e", "a", "zz", "c", "b", "a", "e", "c", "d", "a", "b",
        ]);
        let n = ids.len();
        let at: Vec<String> = (0..n)
            .map(|i| format!("2024-02-{:02} 10:00:00", 1 + (i * 7) % 5))
            .collect();
        let at: Vec<Option<&str>> = at.iter().map(|s| Some(s.as_str())).collect();
        let numbers = |f: fn(usize) -> f64| (0..n).map(f).collect::<Vec<f64>>();
        let frame = |cols: Vec<Column>| DataFrame::new(n, cols).unwrap();
        let logins = frame(vec![col("customer_id", ids.clone()), col("at", at.clone())]);
        parquet(dir, "logins", logins, 3);
        let orders = frame(vec![
            col("customer_id", ids.clone()),
            col("at", at.clone()),
            Column::new("amount".into(), numbers(|i| i as f64 - 2.0)),
        ]);
        parquet(dir, "orders", orders, 4);
        let kinds = strs(&[
            "x", "y", "x", "z", "y", "y", "x", "z", "x", "y", "x", "x", "z",
        ]);
        let events = frame(vec![
            col("customer_id", ids.clone()),
            col("at", at.clone()),
            col("event_type", kinds),
            Column::new("value".into(), numbers(|i| i as f64)),
        ]);
        parquet(dir, "events", events, 3);
        let prio = strs(&[
            "high", "low", "urgent", "normal", "high", "x", "low", "urgent", "high", "low", "x",
            "high", "low",
        ]);
        let tickets = frame(vec![
            col("customer_id", ids.clone()),
            col("opened_at", at.clone()),
            col("closed_at", vec![Some("2024-03-01"); n]),
            col("priority", prio),
            Column::new("csat".into(), numbers(|i| (i % 5 + 1) as f64)),
        ]);
        parquet(dir, "tickets", tickets, 5);
        let churn = frame(vec![col("customer_id", ids), col("churned_at", at)]);
        parquet(dir, "churn", churn, 2);
    }

    fn groups<T: Timed + Copy + Send + Sync>(g: &Option<Grouped<T>>) -> Vec<Vec<T>> {
        let g = g.as_ref().expect("table present");
        (0..5).map(|c| g.of(c).to_vec()).collect()
    }

    #[test]
    fn batches_of_row_groups_load_the_same_base_as_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        let opts = LoadOptions::default();
        let whole = load_in_batches(dir.path(), &opts, usize::MAX).unwrap();
        for batch_rows in [1, 4, 6] {
            let b = load_in_batches(dir.path(), &opts, batch_rows).unwrap();
            assert_eq!(b.summary, whole.summary, "batch_rows {batch_rows}");
            assert_eq!(b.customers.ids, whole.customers.ids);
            assert_eq!(b.customers.attributes, whole.customers.attributes);
            assert_eq!(groups(&b.logins), groups(&whole.logins));
            assert_eq!(groups(&b.orders), groups(&whole.orders));
            assert_eq!(groups(&b.tickets), groups(&whole.tickets));
            assert_eq!(groups(&b.events), groups(&whole.events));
            assert_eq!(groups(&b.churn), groups(&whole.churn));
            assert_eq!(b.event_types, whole.event_types);
        }
        assert_eq!(whole.summary.tables[1].orphans, 1);
        assert_eq!(whole.logins.as_ref().unwrap().len(), 12);
        assert_eq!(whole.event_types, ["x", "y", "z"]);
        // Customer `a` has four logins, in time order.
        let a = whole.logins.as_ref().unwrap().of(0);
        assert_eq!(a.len(), 4);
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "{a:?}");
    }

    /// Logins with an empty customer_id at row 8 and bad timestamps at rows 2 and 5.
    fn bad_cells(dir: &Path) {
        let customers = DataFrame::new(
            2,
            vec![
                col("customer_id", strs(&["a", "b"])),
                col("signup_at", vec![Some("2024-01-01"); 2]),
            ],
        )
        .unwrap();
        parquet(dir, "customers", customers, 2);
        let mut ids = vec![Some("a"); 9];
        ids[7] = Some(" ");
        let mut at = vec![Some("2024-02-01"); 9];
        at[1] = Some("soon");
        at[4] = Some("later");
        let logins = DataFrame::new(9, vec![col("customer_id", ids), col("at", at)]);
        parquet(dir, "logins", logins.unwrap(), 3);
    }

    #[test]
    fn the_first_error_is_the_whole_files_first_whatever_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        bad_cells(dir.path());
        let opts = LoadOptions::default();
        let whole = load_in_batches(dir.path(), &opts, usize::MAX)
            .unwrap_err()
            .to_string();
        // Checked column by column: the empty customer_id of row 8 comes first.
        assert!(whole.contains("row 8, column `customer_id`"), "{whole}");
        for batch_rows in [1, 3, 6] {
            let e = load_in_batches(dir.path(), &opts, batch_rows).unwrap_err();
            assert_eq!(e.to_string(), whole, "batch_rows {batch_rows}");
        }
    }

    #[test]
    fn skipped_rows_are_numbered_and_listed_as_in_a_whole_file_check() {
        let dir = tempfile::tempdir().unwrap();
        bad_cells(dir.path());
        let opts = LoadOptions {
            skip_bad_rows: true,
        };
        let whole = load_in_batches(dir.path(), &opts, usize::MAX).unwrap();
        let rows: Vec<(usize, &str)> = whole
            .summary
            .bad_row_examples
            .iter()
            .map(|b| (b.row, b.column.as_str()))
            .collect();
        assert_eq!(rows, [(8, "customer_id"), (2, "at"), (5, "at")]);
        assert_eq!(whole.logins.as_ref().unwrap().len(), 6);
        for batch_rows in [1, 3, 6] {
            let b = load_in_batches(dir.path(), &opts, batch_rows).unwrap();
            assert_eq!(b.summary, whole.summary, "batch_rows {batch_rows}");
        }
    }
}
