//! Bad cells: stop at the first, or count them and keep examples in the order a check of
//! the whole file at once would list them.

use super::cells::MISSING;
use super::{LoadOptions, Part};
use crate::data::{BadRow, Table};
use crate::time::{fmt_ts, Ts};
use crate::{Error, Result};

/// Collects bad cells; stops at the first one unless skipping.
pub(super) struct Errs {
    skip: bool,
    /// Timestamps after this are refused ([`LoadOptions::latest`]).
    latest: Ts,
    table: Table,
    file: String,
    /// 0-based file row of the first row of the frame being checked.
    offset: usize,
    /// The check running now (checks run column by column, in a fixed order).
    phase: usize,
    /// Row of the frame -> whether it has a problem already.
    pub(super) bad: Vec<bool>,
    /// The first problem of each bad row, with the check that found it; at most 20 per check.
    list: Vec<(usize, BadRow)>,
    /// Examples kept per check.
    kept: Vec<usize>,
    pub(super) count: usize,
}

/// Bad-row examples kept per table file.
const EXAMPLES: usize = 20;

impl Errs {
    pub(super) fn new(part: &Part, opts: &LoadOptions) -> Self {
        Errs {
            skip: opts.skip_bad_rows,
            latest: opts.latest(),
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
    pub(super) fn next_batch(&mut self, part: &Part, offset: usize) {
        self.offset = offset;
        self.phase = 0;
        self.bad.clear();
        self.bad.resize(part.df.height(), false);
    }

    /// The following problems come from the next check.
    pub(super) fn next_check(&mut self) {
        self.phase += 1;
    }

    /// Refuses the rows of the frame whose `column` (`ts`, one per row) is dated after
    /// [`LoadOptions::latest`]: a mistyped year or a placeholder such as 9999-12-31 would
    /// otherwise be the end of the data, and every snapshot and label window would be
    /// laid out up to it.
    pub(super) fn refuse_future(&mut self, ts: &[Ts], column: &str) -> Result<()> {
        for (i, &t) in ts.iter().enumerate() {
            if t != MISSING && t > self.latest && !self.bad[i] {
                self.add(
                    i,
                    column,
                    format!(
                        "{} is after {} (a day past this load's clock): an export cannot hold rows from the future; a mistyped year or a placeholder date? Fix or remove the row (--skip-bad-rows skips it)",
                        fmt_ts(t),
                        fmt_ts(self.latest)
                    ),
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn add(&mut self, row: usize, column: &str, message: String) -> Result<()> {
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
    pub(super) fn examples(mut self) -> Vec<BadRow> {
        self.list.sort_by_key(|(phase, b)| (*phase, b.row));
        self.list.truncate(EXAMPLES);
        self.list.into_iter().map(|(_, b)| b).collect()
    }
}
