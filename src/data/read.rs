//! Reading the tables of a customer-base directory with polars, and validating every cell.

use super::*;
use crate::time::parse_ts;
use crate::{Error, Result};
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
    /// Row -> first problem, only for rows with a problem.
    bad: Vec<bool>,
    list: Vec<BadRow>,
    count: usize,
}

impl Errs {
    fn new(part: &Part, skip: bool) -> Self {
        Errs {
            skip,
            table: part.table,
            file: part.file.clone(),
            bad: vec![false; part.df.height()],
            list: Vec::new(),
            count: 0,
        }
    }

    fn add(&mut self, row: usize, column: &str, message: String) -> Result<()> {
        if !self.skip {
            return Err(Error::BadValue {
                table: self.table.name().to_string(),
                file: self.file.clone(),
                row: row + 1,
                column: column.to_string(),
                message,
            });
        }
        if !self.bad[row] {
            self.bad[row] = true;
            self.count += 1;
            if self.list.len() < 20 {
                self.list.push(BadRow {
                    table: self.table.name().to_string(),
                    file: self.file.clone(),
                    row: row + 1,
                    column: column.to_string(),
                    message,
                });
            }
        }
        Ok(())
    }
}

/// Loads and validates the customer base in `dir` (see `shared/data-contract.md`).
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<CustomerBase> {
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
        let act = read_activity(src, &base.customers.index, opts)?;
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
            Rows::Logins(c, r) => base.logins = Some(Grouped::build(n, &c, r)),
            Rows::Tickets(c, r) => base.tickets = Some(Grouped::build(n, &c, r)),
            Rows::Orders(c, r) => base.orders = Some(Grouped::build(n, &c, r)),
            Rows::Events(c, r, types) => {
                base.events = Some(Grouped::build(n, &c, r));
                base.event_types = types;
            }
            Rows::Churn(c, r) => base.churn = Some(Grouped::build(n, &c, r)),
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
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
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
        let signup = timestamps(part, "signup_at", &mut errs)?;
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
        examples.extend(errs.list);
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

enum Rows {
    Logins(Vec<u32>, Vec<Ts>),
    Tickets(Vec<u32>, Vec<Ticket>),
    Orders(Vec<u32>, Vec<Order>),
    Events(Vec<u32>, Vec<Event>, Vec<String>),
    Churn(Vec<u32>, Vec<Ts>),
}

struct Activity {
    rows: Rows,
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

fn read_activity(src: &Source, index: &IdIndex, opts: &LoadOptions) -> Result<Activity> {
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
    let mut cust: Vec<u32> = Vec::new();
    let mut logins = Vec::new();
    let mut tickets = Vec::new();
    let mut orders = Vec::new();
    let mut events = Vec::new();
    let mut churn: Vec<Ts> = Vec::new();
    let mut types: Vec<String> = Vec::new();
    let mut type_index = IdIndex::default();
    for path in &src.parts {
        let part = Part {
            table,
            file: path.display().to_string(),
            df: read_file(path)?,
        };
        summary.files.push(part.file.clone());
        let time_col = match table {
            Table::Tickets => "opened_at",
            Table::Churn => "churned_at",
            _ => "at",
        };
        let mut required = vec!["customer_id", time_col];
        match table {
            Table::Orders => required.push("amount"),
            Table::Events => required.push("event_type"),
            _ => {}
        }
        require(&part, &required)?;
        let mut errs = Errs::new(&part, opts.skip_bad_rows);
        let ids = customer_ids(&part, index, &mut errs)?;
        let at = timestamps(&part, time_col, &mut errs)?;
        for (i, t) in at.iter().enumerate() {
            if *t == MISSING && !errs.bad[i] {
                errs.add(i, time_col, format!("empty {time_col} (required)"))?;
            }
        }
        let n = part.df.height();
        // Table-specific columns.
        let mut closed = vec![MISSING; n];
        let mut priority = vec![Priority::Normal; n];
        let mut csat = vec![f64::NAN; n];
        let mut amount = vec![f64::NAN; n];
        let mut value = vec![f64::NAN; n];
        let mut kind = vec![0u32; n];
        match table {
            Table::Tickets => {
                if has(&part.df, "closed_at") {
                    closed = timestamps(&part, "closed_at", &mut errs)?;
                    for i in 0..n {
                        let (o, c) = (at[i], closed[i]);
                        if o != MISSING && c != MISSING && c < o {
                            errs.add(i, "closed_at", "closed_at is before opened_at".into())?;
                        }
                    }
                }
                if has(&part.df, "priority") {
                    let p = strings(&part, "priority")?;
                    for (i, v) in p.iter().enumerate() {
                        priority[i] = v.map_or(Priority::Normal, Priority::parse);
                    }
                }
                if has(&part.df, "csat") {
                    csat = numbers(&part, "csat", &mut errs)?;
                    for (i, c) in csat.iter().enumerate() {
                        if !c.is_nan() && !(1.0..=5.0).contains(c) {
                            errs.add(i, "csat", format!("csat {c} is outside 1..5"))?;
                        }
                    }
                }
            }
            Table::Orders => {
                amount = numbers(&part, "amount", &mut errs)?;
                for (i, a) in amount.iter().enumerate() {
                    if a.is_nan() && !errs.bad[i] {
                        errs.add(i, "amount", "empty amount (required)".into())?;
                    }
                }
            }
            Table::Events => {
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
                if has(&part.df, "value") {
                    value = numbers(&part, "value", &mut errs)?;
                }
            }
            _ => {}
        }
        // The frame is no longer needed: free it before the rows are assembled.
        drop(part);
        let kept = (0..n).filter(|&i| !errs.bad[i] && ids[i] != ORPHAN).count();
        cust.reserve(kept);
        match table {
            Table::Logins => logins.reserve(kept),
            Table::Tickets => tickets.reserve(kept),
            Table::Orders => orders.reserve(kept),
            Table::Events => events.reserve(kept),
            _ => churn.reserve(kept),
        }
        for i in 0..n {
            if errs.bad[i] {
                continue;
            }
            if ids[i] == ORPHAN {
                summary.orphans += 1;
                continue;
            }
            let t = at[i];
            widen(t);
            cust.push(ids[i]);
            match table {
                Table::Logins => logins.push(t),
                Table::Tickets => tickets.push(Ticket {
                    opened: t,
                    closed: (closed[i] != MISSING).then_some(closed[i]),
                    priority: priority[i],
                    csat: csat[i],
                }),
                Table::Orders => orders.push(Order {
                    at: t,
                    amount: amount[i],
                }),
                Table::Events => events.push(Event {
                    at: t,
                    kind: kind[i],
                    value: if value[i].is_nan() {
                        1.0
                    } else {
                        value[i] as f32
                    },
                }),
                Table::Churn => churn.push(t),
                Table::Customers => unreachable!("customers are read by read_customers"),
            }
        }
        summary.bad_rows += errs.count;
        examples.extend(errs.list);
    }
    let rows = match table {
        Table::Logins => Rows::Logins(cust, logins),
        Table::Tickets => Rows::Tickets(cust, tickets),
        Table::Orders => Rows::Orders(cust, orders),
        Table::Events => Rows::Events(cust, events, types),
        Table::Churn => {
            // At most one churn per customer and date: drop repeats.
            let mut pairs: Vec<(u32, Ts)> = cust.into_iter().zip(churn).collect();
            pairs.sort_unstable();
            let before = pairs.len();
            pairs.dedup_by_key(|(c, t)| (*c, t.div_euclid(crate::time::DAY)));
            summary.duplicates = before - pairs.len();
            let (c, t) = pairs.into_iter().unzip();
            Rows::Churn(c, t)
        }
        Table::Customers => unreachable!("customers are read by read_customers"),
    };
    summary.rows = match &rows {
        Rows::Logins(c, _)
        | Rows::Tickets(c, _)
        | Rows::Orders(c, _)
        | Rows::Events(c, _, _)
        | Rows::Churn(c, _) => c.len(),
    };
    Ok(Activity {
        rows,
        summary,
        bad_examples: examples,
        range,
    })
}
