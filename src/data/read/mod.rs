//! Reading the tables of a customer-base directory with polars, and validating every cell.
//!
//! By job: finding the tables and loading them in order (here); `errors` (collecting bad
//! cells, in the order a whole-file check finds them); `cells` (typed columns from
//! text or Parquet); `csv_scan` (the line, row and column of a CSV file that is not
//! well-formed); `customers` (the customers table and its attributes); `activity`
//! (the five activity tables, read in batches of row groups and grouped by customer).

mod activity;
pub(super) mod cells;
mod csv_scan;
mod customers;
mod errors;
pub mod split;

use super::{CustomerBase, Summary, Table};
use crate::{Error, Result};
use polars::prelude::*;
use std::path::{Path, PathBuf};

use activity::{read_activity, BatchFile, Grouping, BATCH_ROWS};
use cells::read_file;
use customers::read_customers;

/// How strict a load is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Count and skip unparseable rows instead of stopping at the first one.
    pub skip_bad_rows: bool,
    /// The instant the load runs at; `None`: the system clock. A row dated more than a
    /// day after it ([`LoadOptions::latest`]) is a bad row: an export cannot hold the
    /// future, and one row dated 9999 would otherwise become the end of the data.
    pub now: Option<crate::time::Ts>,
}

impl LoadOptions {
    /// The latest timestamp a row's `signup_at`, `at`, `opened_at` or `churned_at` may
    /// hold: [`LoadOptions::now`] plus a day (time zones and clock skew).
    pub fn latest(&self) -> crate::time::Ts {
        let now = self.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
        now + crate::time::DAY
    }
}

/// Where a table comes from: one file, a directory of Parquet parts, or frames in memory.
#[derive(Debug, Clone)]
struct Source {
    table: Table,
    parts: Vec<Input>,
}

/// One part of a table: a file, or a frame handed over in memory ([`load_frames`]).
#[derive(Debug, Clone)]
enum Input {
    File(PathBuf),
    Frame(DataFrame),
}

/// What messages call a frame given in memory, where a file's path would be.
const FRAME_LABEL: &str = "frame";

impl Input {
    /// The file's path, or [`FRAME_LABEL`]: what messages name.
    fn label(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Frame(_) => FRAME_LABEL.to_string(),
        }
    }
}

/// One part of a table, read into memory.
struct Part {
    table: Table,
    file: String,
    df: DataFrame,
}

/// Loads and validates the customer base in `dir` (see `shared/data-contract.md`).
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<CustomerBase> {
    load_in_batches(dir, opts, BATCH_ROWS)
}

/// Checks the customer base in `dir` exactly as [`load`] does (the same errors, the same
/// [`Summary`]) without keeping its activity rows: memory holds the customers and one
/// batch of a table, whatever the base's size. What `inspect` and `generate` print.
pub fn summarize(dir: &Path, opts: &LoadOptions) -> Result<Summary> {
    let (sources, ignored) = discover(dir)?;
    let base = load_sources(
        &dir.display().to_string(),
        sources,
        ignored,
        opts,
        BATCH_ROWS,
        false,
    )?;
    Ok(base.summary)
}

/// Loads and validates a customer base from tables already in memory (any subset of the
/// six; `customers` is required), with exactly the checks and messages of [`load`]: a
/// message names the table and `frame` where [`load`] names the file. Columns may be
/// text (parsed as the CSV reader's cells are) or typed (as Parquet's are).
pub fn load_frames(tables: Vec<(Table, DataFrame)>, opts: &LoadOptions) -> Result<CustomerBase> {
    let mut sources: Vec<Source> = Vec::new();
    for (table, df) in tables {
        if sources.iter().any(|s| s.table == table) {
            return Err(Error::Data(format!(
                "table `{}` is given twice; keep one",
                table.name()
            )));
        }
        sources.push(Source {
            table,
            parts: vec![Input::Frame(df)],
        });
    }
    load_sources(FRAME_LABEL, sources, Vec::new(), opts, BATCH_ROWS, true)
}

/// [`load`], reading Parquet activity tables in batches of about `batch_rows` rows.
fn load_in_batches(dir: &Path, opts: &LoadOptions, batch_rows: usize) -> Result<CustomerBase> {
    let (sources, ignored) = discover(dir)?;
    load_sources(
        &dir.display().to_string(),
        sources,
        ignored,
        opts,
        batch_rows,
        true,
    )
}

/// Reads and validates the tables of `sources`, `customers` first; `directory` is where
/// they come from (for the summary and messages). Without `keep_rows`, the activity
/// tables are checked and counted but their rows are not kept ([`summarize`]).
fn load_sources(
    directory: &str,
    sources: Vec<Source>,
    ignored: Vec<String>,
    opts: &LoadOptions,
    batch_rows: usize,
    keep_rows: bool,
) -> Result<CustomerBase> {
    let mut summary = Summary {
        directory: directory.to_string(),
        ignored_files: ignored,
        ..Summary::default()
    };
    let find = |t: Table| sources.iter().find(|s| s.table == t);
    let customers_src = find(Table::Customers).ok_or_else(|| {
        Error::Data(format!(
            "{directory}: no `customers` table (customers.csv, customers.parquet or a customers/ directory of Parquet parts); it is the one required table"
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
        let act = read_activity(src, &base.customers.index, n, opts, batch_rows, keep_rows)?;
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
                prev.parts[0].label(),
                path.display()
            )));
        }
        let parts = if path.is_dir() {
            let parts = dir_parts(&path)?;
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
        let parts = parts.into_iter().map(Input::File).collect();
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
                file: p.label(),
                df: match p {
                    Input::File(path) => read_file(path)?,
                    Input::Frame(df) => df.clone(),
                },
            })
        })
        .collect()
}

/// The `.parquet` and `.csv` parts of a directory table, in name order; names starting
/// with `_` or `.` (a Spark job's `_SUCCESS`, hidden files) are not parts.
pub(crate) fn dir_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
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
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Grouped, Timed};

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
    fn frames_in_memory_load_the_same_base_as_their_files() {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        let opts = LoadOptions::default();
        let files = load(dir.path(), &opts).unwrap();
        let tables: Vec<(Table, DataFrame)> = Table::ALL
            .into_iter()
            .map(|t| {
                let path = dir.path().join(format!("{}.parquet", t.name()));
                (t, read_file(&path).unwrap())
            })
            .collect();
        let frames = load_frames(tables, &opts).unwrap();
        assert_eq!(frames.summary.directory, "frame");
        assert_eq!(frames.summary.tables.len(), files.summary.tables.len());
        for (f, d) in frames.summary.tables.iter().zip(&files.summary.tables) {
            assert_eq!(f.files, ["frame"]);
            assert_eq!(
                (f.rows, f.orphans, f.bad_rows),
                (d.rows, d.orphans, d.bad_rows)
            );
        }
        assert_eq!(frames.customers.ids, files.customers.ids);
        assert_eq!(frames.customers.attributes, files.customers.attributes);
        assert_eq!(groups(&frames.logins), groups(&files.logins));
        assert_eq!(groups(&frames.orders), groups(&files.orders));
        assert_eq!(groups(&frames.tickets), groups(&files.tickets));
        assert_eq!(groups(&frames.events), groups(&files.events));
        assert_eq!(groups(&frames.churn), groups(&files.churn));
    }

    #[test]
    fn a_bad_cell_of_a_frame_is_named_like_a_files_and_customers_are_required() {
        let customers = DataFrame::new(
            2,
            vec![
                col("customer_id", strs(&["a", "b"])),
                col("signup_at", strs(&["2024-01-01", "soon"])),
            ],
        )
        .unwrap();
        let e = load_frames(vec![(Table::Customers, customers)], &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "table `customers` (frame), row 2, column `signup_at`: `soon` is not a timestamp (use RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`)"
        );
        let e = load_frames(Vec::new(), &LoadOptions::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("frame: no `customers` table"),
            "{e}"
        );
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
            ..LoadOptions::default()
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

    /// The Thrift footer of a Parquet file: the bytes between the data and the closing
    /// 4-byte length and `PAR1`.
    fn footer(bytes: &[u8]) -> std::ops::Range<usize> {
        let n = bytes.len();
        let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
        n - 8 - len..n - 8
    }

    /// Whether polars' own reader panics on `path` (the case the loader must contain).
    fn polars_panics_on(path: &Path) -> bool {
        let file = std::fs::File::open(path).unwrap();
        std::panic::catch_unwind(|| ParquetReader::new(file).finish()).is_err()
    }

    #[test]
    fn a_flipped_byte_in_a_parquet_footer_is_an_error_naming_the_file_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path());
        let opts = LoadOptions::default();
        // customers is read whole, logins in batches of row groups: both reading paths.
        for table in ["customers", "logins"] {
            let path = dir.path().join(format!("{table}.parquet"));
            let good = std::fs::read(&path).unwrap();
            let mut panicking = 0;
            for at in footer(&good) {
                let mut bad = good.clone();
                bad[at] ^= 0xff;
                std::fs::write(&path, &bad).unwrap();
                let raw_panics = polars_panics_on(&path);
                let loaded = std::panic::catch_unwind(|| load_in_batches(dir.path(), &opts, 4));
                let loaded = loaded.unwrap_or_else(|_| {
                    panic!("{table}: byte {at} of the footer flipped: the loader panicked")
                });
                if raw_panics {
                    panicking += 1;
                    let e = loaded.err().unwrap_or_else(|| {
                        panic!("{table}: byte {at}: polars panics, the loader read it")
                    });
                    let text = e.chain().to_string();
                    assert!(text.contains(&path.display().to_string()), "{text}");
                    assert!(text.contains("not a readable Parquet file"), "{text}");
                }
            }
            std::fs::write(&path, &good).unwrap();
            // The test is only worth its name if it meets the panics it is about.
            assert!(
                panicking > 0,
                "{table}: no flipped footer byte made polars panic"
            );
        }
        load_in_batches(dir.path(), &opts, 4).expect("the restored base loads");
    }

    /// Writes tiny CSV tables into a fresh directory.
    fn csv_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    const CUSTOMERS: &[u8] = b"customer_id,signup_at,plan\na,2024-01-01,pro\nb,2024-01-02,basic\n";

    /// The error loading `files` strictly, as printed.
    fn load_error(files: &[(&str, &[u8])]) -> (tempfile::TempDir, String) {
        let dir = csv_dir(files);
        let e = load(dir.path(), &LoadOptions::default()).unwrap_err();
        (dir, e.to_string())
    }

    #[test]
    fn a_csv_row_with_too_few_fields_names_file_line_row_and_the_first_missing_column() {
        let (dir, e) = load_error(&[(
            "customers.csv",
            b"customer_id,signup_at,plan\na,2024-01-01,pro\nb,2024-01-02\n",
        )]);
        let file = dir.path().join("customers.csv");
        assert_eq!(
            e,
            format!("{}, line 3 (row 2, column `plan`): 2 fields where the header has 3 (missing from here on); a ragged row, an unquoted `,` or a stray line break?", file.display())
        );
    }

    #[test]
    fn a_csv_row_with_too_many_fields_names_file_line_and_row() {
        let (dir, e) = load_error(&[
            ("customers.csv", CUSTOMERS),
            (
                "logins.csv",
                b"customer_id,at\na,2024-02-01\nb,2024-02-02\na,2024-02-03,x\n",
            ),
        ]);
        let file = dir.path().join("logins.csv");
        assert_eq!(
            e,
            format!("{}, line 4 (row 3): 3 fields where the header has 2 (one too many or more); a ragged row, an unquoted `,` or a stray line break?", file.display())
        );
    }

    #[test]
    fn an_unclosed_csv_quote_names_the_line_where_it_opened() {
        let (dir, e) = load_error(&[
            ("customers.csv", CUSTOMERS),
            (
                "orders.csv",
                b"customer_id,at,amount\na,2024-02-01,10\nb,\"2024-02-02,5\na,2024-02-03,7\n",
            ),
        ]);
        let file = dir.path().join("orders.csv");
        assert_eq!(
            e,
            format!(
                "{}, line 3 (row 2, column `at`): a quoted field opened on this line is never closed",
                file.display()
            )
        );
    }

    #[test]
    fn invalid_utf8_in_a_csv_names_file_line_row_and_column() {
        let (dir, e) = load_error(&[(
            "customers.csv",
            b"customer_id,signup_at,plan\na,2024-01-01,pro\nb,2024-01-02,caf\xe9\n",
        )]);
        let file = dir.path().join("customers.csv");
        assert_eq!(
            e,
            format!(
                "{}, line 3 (row 2, column `plan`): invalid UTF-8 (byte 0xe9 at byte offset 60); save the file as UTF-8",
                file.display()
            )
        );
    }

    #[test]
    fn a_row_dated_after_the_load_is_a_bad_row_with_table_file_row_and_column() {
        let dir = csv_dir(&[
            ("customers.csv", CUSTOMERS),
            (
                "logins.csv",
                b"customer_id,at\na,2024-02-01\nb,9999-01-01\na,2024-02-03\n",
            ),
        ]);
        let now = crate::time::parse_ts("2024-06-01").unwrap();
        let strict = LoadOptions {
            now: Some(now),
            ..LoadOptions::default()
        };
        let e = load(dir.path(), &strict).unwrap_err().to_string();
        let file = dir.path().join("logins.csv");
        assert_eq!(
            e,
            format!("table `logins` ({}), row 2, column `at`: 9999-01-01T00:00:00Z is after 2024-06-02T00:00:00Z (a day past this load's clock): an export cannot hold rows from the future; a mistyped year or a placeholder date? Fix or remove the row (--skip-bad-rows skips it)", file.display())
        );
        // Skipped, the row does not become the end of the data.
        let skipping = LoadOptions {
            skip_bad_rows: true,
            ..strict.clone()
        };
        let base = load(dir.path(), &skipping).unwrap();
        assert_eq!(base.summary.bad_rows(), 1);
        assert_eq!(
            base.data_end(),
            crate::time::parse_ts("2024-02-03"),
            "{:?}",
            base.summary
        );
        // A day of clock skew is allowed; a signup after it is refused too.
        let dir = csv_dir(&[(
            "customers.csv",
            b"customer_id,signup_at\na,2024-06-02\nb,2024-06-02T00:00:01Z\n",
        )]);
        let e = load(dir.path(), &strict).unwrap_err().to_string();
        assert!(
            e.contains("row 2, column `signup_at`: 2024-06-02T00:00:01Z is after"),
            "{e}"
        );
    }
}
