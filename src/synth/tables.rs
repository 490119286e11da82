//! Turning simulated blocks into data-contract frames and streaming them to files,
//! one row group (Parquet) or chunk (CSV) per batch of customers.

use super::model::{Block, CHANNELS, COUNTRIES, EVENT_TYPES, NULL_TS, PLANS, PRIORITIES};
use super::SynthFormat;
use crate::{Error, Result};
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The tables written, in this order.
pub(super) const TABLES: [&str; 6] = [
    "customers",
    "logins",
    "tickets",
    "orders",
    "events",
    "churn",
];

/// The customer ids of a batch written once into one buffer (`c000123`), so that id
/// columns are built from `&str` slices without a `String` per row.
pub(super) struct IdBook {
    width: usize,
    first: usize,
    buf: String,
}

impl IdBook {
    /// Ids of customers `first .. first + len`, zero-padded to `digits` digits.
    pub fn new(digits: usize, first: usize, len: usize) -> IdBook {
        use std::fmt::Write;
        let width = digits + 1;
        let mut buf = String::with_capacity(len * width);
        for i in first..first + len {
            let _ = write!(buf, "c{i:0digits$}");
        }
        IdBook { width, first, buf }
    }

    /// Digits needed so that every id of a run of `customers` has the same width (min 6).
    pub fn digits_for(customers: usize) -> usize {
        customers.saturating_sub(1).to_string().len().max(6)
    }

    fn get(&self, idx: u32) -> &str {
        let o = (idx as usize - self.first) * self.width;
        &self.buf[o..o + self.width]
    }
}

fn id_column(ids: &IdBook, c: &[u32]) -> Column {
    StringChunked::from_iter_values("customer_id".into(), c.iter().map(|&i| ids.get(i)))
        .into_column()
}

fn ts_column(name: &str, mut secs: Vec<i64>) -> Column {
    for s in &mut secs {
        *s *= 1000;
    }
    Int64Chunked::from_vec(name.into(), secs)
        .into_datetime(TimeUnit::Milliseconds, None)
        .into_column()
}

fn ts_opt_column(name: &str, secs: &[i64]) -> Column {
    Int64Chunked::from_iter_options(
        name.into(),
        secs.iter().map(|&s| (s != NULL_TS).then_some(s * 1000)),
    )
    .into_datetime(TimeUnit::Milliseconds, None)
    .into_column()
}

fn str_column(name: &str, codes: &[u8], dict: &[&'static str]) -> Column {
    StringChunked::from_iter_values(name.into(), codes.iter().map(|&c| dict[c as usize]))
        .into_column()
}

/// The six frames of a batch, in [`TABLES`] order.
pub(super) fn frames(b: Block, digits: usize) -> PolarsResult<[DataFrame; 6]> {
    let ids = IdBook::new(digits, b.first, b.len);
    let customers = DataFrame::new(
        b.len,
        vec![
            StringChunked::from_iter_values(
                "customer_id".into(),
                (0..b.len).map(|i| ids.get((b.first + i) as u32)),
            )
            .into_column(),
            Int32Chunked::from_vec("signup_at".into(), b.signup_day)
                .into_date()
                .into_column(),
            str_column("plan", &b.plan, &PLANS),
            str_column("channel", &b.channel, &CHANNELS),
            str_column("country", &b.country, &COUNTRIES),
            Float64Chunked::from_vec("monthly_fee".into(), b.fee).into_column(),
        ],
    )?;
    let logins = DataFrame::new(
        b.login_at.len(),
        vec![id_column(&ids, &b.login_c), ts_column("at", b.login_at)],
    )?;
    let tickets = DataFrame::new(
        b.ticket_opened.len(),
        vec![
            id_column(&ids, &b.ticket_c),
            ts_column("opened_at", b.ticket_opened),
            ts_opt_column("closed_at", &b.ticket_closed),
            str_column("priority", &b.ticket_priority, &PRIORITIES),
            Int32Chunked::from_iter_options(
                "csat".into(),
                b.ticket_csat
                    .iter()
                    .map(|&c| (c > 0).then_some(i32::from(c))),
            )
            .into_column(),
        ],
    )?;
    let orders = DataFrame::new(
        b.order_at.len(),
        vec![
            id_column(&ids, &b.order_c),
            ts_column("at", b.order_at),
            Float64Chunked::from_vec("amount".into(), b.order_amount).into_column(),
        ],
    )?;
    let events = DataFrame::new(
        b.event_at.len(),
        vec![
            id_column(&ids, &b.event_c),
            ts_column("at", b.event_at),
            str_column("event_type", &b.event_type, &EVENT_TYPES),
            Float64Chunked::from_iter_options(
                "value".into(),
                b.event_value.iter().map(|&v| (!v.is_nan()).then_some(v)),
            )
            .into_column(),
        ],
    )?;
    let churn = DataFrame::new(
        b.churn_at.len(),
        vec![
            id_column(&ids, &b.churn_c),
            ts_column("churned_at", b.churn_at),
        ],
    )?;
    Ok([customers, logins, tickets, orders, events, churn])
}

enum Writer {
    Parquet(Box<polars::io::parquet::write::BatchedWriter<File>>),
    Csv(polars::io::csv::write::BatchedWriter<File>),
}

/// Streams the six tables into `dir`, one batch at a time.
pub(super) struct Sink {
    format: SynthFormat,
    dir: PathBuf,
    writers: Vec<Writer>,
    rows: [usize; 6],
}

impl Sink {
    pub fn new(dir: &Path, format: SynthFormat) -> Sink {
        Sink {
            format,
            dir: dir.to_path_buf(),
            writers: Vec::new(),
            rows: [0; 6],
        }
    }

    /// Where table `i` is written.
    pub fn path(&self, i: usize) -> PathBuf {
        self.dir
            .join(format!("{}.{}", TABLES[i], self.format.extension()))
    }

    fn open(&mut self, frames: &[DataFrame; 6]) -> Result<()> {
        for (i, df) in frames.iter().enumerate() {
            let path = self.path(i);
            let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            let ctx = || format!("writing {}", path.display());
            let w = match self.format {
                SynthFormat::Parquet => Writer::Parquet(Box::new(
                    ParquetWriter::new(file)
                        .batched(df.schema())
                        .map_err(|e| Error::polars(ctx(), e))?,
                )),
                SynthFormat::Csv => Writer::Csv(
                    CsvWriter::new(file)
                        .include_header(true)
                        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S".into()))
                        .with_date_format(Some("%Y-%m-%d".into()))
                        .batched(df.schema())
                        .map_err(|e| Error::polars(ctx(), e))?,
                ),
            };
            self.writers.push(w);
        }
        Ok(())
    }

    /// Writes one batch of customers.
    pub fn write(&mut self, frames: [DataFrame; 6]) -> Result<()> {
        if self.writers.is_empty() {
            self.open(&frames)?;
        }
        for (i, df) in frames.iter().enumerate() {
            let r = match &mut self.writers[i] {
                Writer::Parquet(w) => w.write_batch(df),
                Writer::Csv(w) => w.write_batch(df),
            };
            r.map_err(|e| Error::polars(format!("writing {}", self.path(i).display()), e))?;
            self.rows[i] += df.height();
        }
        Ok(())
    }

    /// Finishes every file (Parquet footers), flushes them to disk and returns the row counts.
    pub fn finish(mut self) -> Result<[usize; 6]> {
        for (i, w) in std::mem::take(&mut self.writers).into_iter().enumerate() {
            let path = self.path(i);
            let r = match w {
                Writer::Parquet(w) => w.finish().map(|_| ()),
                Writer::Csv(mut w) => w.finish(),
            };
            r.map_err(|e| Error::polars(format!("writing {}", path.display()), e))?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(self.rows)
    }
}
