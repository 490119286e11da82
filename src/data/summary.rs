//! What a load saw: rows per table, orphans, bad rows, ignored files, time range.

use crate::time::{fmt_ts, Ts};
use serde::Serialize;
use std::fmt;

/// One unparseable row, located precisely.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BadRow {
    pub table: String,
    pub file: String,
    /// 1-based data row (the header is not counted).
    pub row: usize,
    pub column: String,
    pub message: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table `{}` ({}), row {}, column `{}`: {}",
            self.table, self.file, self.row, self.column, self.message
        )
    }
}

/// Counts for one table.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct TableSummary {
    pub table: String,
    pub files: Vec<String>,
    /// Rows kept after validation.
    pub rows: usize,
    /// Rows whose customer is not in `customers` (ignored).
    pub orphans: usize,
    /// Rows skipped because a cell could not be parsed (`--skip-bad-rows`).
    pub bad_rows: usize,
    /// Exact duplicate rows dropped (only for `churn`: one row per customer and date).
    pub duplicates: usize,
}

/// The summary printed by `inspect`, `generate` and `train`, and written into reports.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Summary {
    pub directory: String,
    pub customers: usize,
    pub tables: Vec<TableSummary>,
    /// Optional tables not found (their features are not built).
    pub missing_tables: Vec<String>,
    /// Files that are not table names (reported, ignored).
    pub ignored_files: Vec<String>,
    /// Earliest and latest activity timestamp (signups included).
    pub time_range: Option<(crate::time::Ts, crate::time::Ts)>,
    /// The first bad rows seen, for the report (at most 20).
    pub bad_row_examples: Vec<BadRow>,
}

impl Summary {
    /// Total rows skipped as unparseable.
    pub fn bad_rows(&self) -> usize {
        self.tables.iter().map(|t| t.bad_rows).sum()
    }

    /// Total orphan rows.
    pub fn orphans(&self) -> usize {
        self.tables.iter().map(|t| t.orphans).sum()
    }

    pub(crate) fn widen(&mut self, t: Ts) {
        self.time_range = Some(match self.time_range {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "customer base {}", self.directory)?;
        writeln!(f, "  customers: {}", self.customers)?;
        if let Some((a, b)) = self.time_range {
            writeln!(f, "  time range: {} .. {}", fmt_ts(a), fmt_ts(b))?;
        }
        writeln!(
            f,
            "  {:<10} {:>12} {:>9} {:>9}  files",
            "table", "rows", "orphans", "bad rows"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "  {:<10} {:>12} {:>9} {:>9}  {}",
                t.table,
                t.rows,
                t.orphans,
                t.bad_rows,
                t.files.join(", ")
            )?;
        }
        if !self.missing_tables.is_empty() {
            writeln!(
                f,
                "  missing (optional, their features are left out): {}",
                self.missing_tables.join(", ")
            )?;
        }
        if !self.ignored_files.is_empty() {
            writeln!(
                f,
                "  ignored files (not table names): {}",
                self.ignored_files.join(", ")
            )?;
        }
        for b in &self.bad_row_examples {
            writeln!(f, "  skipped: {b}")?;
        }
        Ok(())
    }
}
