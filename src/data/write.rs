//! Writing frames to Parquet or CSV atomically (through [`crate::fsutil`]).
//!
//! The outputs' typed columns ([`timestamp_column`], [`string_list_column`]) keep their
//! types in Parquet; CSV has none, so there a timestamp is RFC 3339 UTC text
//! (`2024-06-01T00:00:00Z`) and a list of strings its items joined with `,`.

use crate::fsutil::{stage_with, write_atomic_with, Staged};
use crate::time::Ts;
use crate::{Error, Result};
use chrono::{DateTime, SecondsFormat};
use polars::prelude::*;
use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

/// A Parquet writer whose file records its Arrow schema (`ARROW:schema`) at the oldest
/// compatibility level (`large_string`, not polars' default `string_view`). pyarrow
/// restores the stored types, and pandas 3.1 on pyarrow 26 cannot convert a
/// `list<string_view>` column (`early_warnings`): `pd.read_parquet` of a score file failed
/// with `ArrowNotImplementedError: Not implemented type for Arrow list to pandas:
/// string_view`. The data pages are the same; only the declared types change.
pub fn parquet_writer<W: Write>(w: W, schema: &Schema) -> ParquetWriter<W> {
    let arrow = schema.to_arrow(CompatLevel::oldest());
    let key = polars_parquet::write::schema_to_metadata_key(&arrow);
    ParquetWriter::new(w).with_key_value_metadata(Some(KeyValueMetadata::Static(vec![key])))
}

/// A timestamp column of an output: Parquet `Datetime(µs, UTC)`, so that polars, pandas
/// and DuckDB read it as a UTC timestamp without parsing text.
pub fn timestamp_column(name: &str, ts: impl IntoIterator<Item = Ts>) -> Column {
    let micros: Vec<i64> = ts.into_iter().map(|t| t * 1_000_000).collect();
    Int64Chunked::from_vec(name.into(), micros)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

/// A column of string lists (Parquet `List(Utf8)`), one list per row.
pub fn string_list_column<'a, R, I>(name: &str, rows: R) -> Column
where
    R: ExactSizeIterator<Item = I>,
    I: Iterator<Item = &'a str>,
{
    let mut b = ListStringChunkedBuilder::new(name.into(), rows.len(), rows.len());
    for row in rows {
        b.append_values_iter(row);
    }
    b.finish().into_column()
}

/// `df` as CSV can hold it: datetime columns as RFC 3339 UTC text, string lists joined
/// with `,` (an empty list is an empty cell). Borrowed when there is nothing to change.
fn csv_ready(df: &DataFrame) -> Result<Cow<'_, DataFrame>> {
    let text = |c: &Column| matches!(c.dtype(), DataType::Datetime(..) | DataType::List(_));
    if !df.columns().iter().any(text) {
        return Ok(Cow::Borrowed(df));
    }
    let err = |c: &Column| {
        let name = c.name().to_string();
        move |e| Error::polars(format!("column `{name}` as CSV text"), e)
    };
    let mut cols = Vec::with_capacity(df.width());
    for c in df.columns() {
        let s = c.as_materialized_series();
        let name = c.name().clone();
        let col = match s.dtype() {
            DataType::Datetime(unit, _) => {
                let per_sec = super::ticks_per_second(*unit);
                let nanos_per = 1_000_000_000 / per_sec;
                let phys = s.to_physical_repr();
                let ca: StringChunked = phys
                    .i64()
                    .map_err(err(c))?
                    .iter()
                    .map(|v| {
                        let v = v?;
                        let (secs, sub) = (v.div_euclid(per_sec), v.rem_euclid(per_sec));
                        let dt = DateTime::from_timestamp(secs, (sub * nanos_per) as u32)?;
                        Some(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                    })
                    .collect();
                ca.with_name(name).into_column()
            }
            DataType::List(inner) if matches!(inner.as_ref(), DataType::String) => {
                let ca: StringChunked = s
                    .list()
                    .map_err(err(c))?
                    .amortized_iter()
                    .map(|row| {
                        let row = row?;
                        let items = row.as_ref().str().ok()?;
                        Some(items.iter().flatten().collect::<Vec<_>>().join(","))
                    })
                    .collect();
                ca.with_name(name).into_column()
            }
            _ => c.clone(),
        };
        cols.push(col);
    }
    DataFrame::new(df.height(), cols)
        .map(Cow::Owned)
        .map_err(|e| Error::polars("preparing the CSV table", e))
}

/// The formats a table is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Parquet,
    Csv,
}

/// The format of an output table from its file's extension: `.parquet` or `.csv`, in any
/// case. Anything else is refused rather than guessed: a `scores.txt` holding Parquet
/// would surprise whoever opens it. Commands call this while validating their options,
/// so a wrong name fails before any work is done.
pub fn output_format(path: &Path) -> Result<OutputFormat> {
    let ext = path.extension().map(|e| e.to_string_lossy());
    match ext.as_deref() {
        Some(e) if e.eq_ignore_ascii_case("parquet") => Ok(OutputFormat::Parquet),
        Some(e) if e.eq_ignore_ascii_case("csv") => Ok(OutputFormat::Csv),
        other => Err(Error::Config(format!(
            "{}: {}; an output table is written as `.parquet` or `.csv`",
            path.display(),
            match other {
                Some(e) => format!("unknown extension `.{e}`"),
                None => "no extension".into(),
            }
        ))),
    }
}

/// Writes `df` to `path` as Parquet or CSV (by [`output_format`]), so that readers see
/// either the old file or the complete new one. CSV gets the text forms of the module doc.
pub fn write_frame(df: &mut DataFrame, path: &Path) -> Result<()> {
    stage_frame(df, path)?.commit()
}

/// [`write_frame`] up to the rename: the complete file, fsynced, not yet in place.
pub fn stage_frame(df: &mut DataFrame, path: &Path) -> Result<Staged> {
    let csv = output_format(path)? == OutputFormat::Csv;
    stage_with(path, |file| {
        if csv {
            CsvWriter::new(file)
                .include_header(true)
                .finish(&mut csv_ready(df)?.into_owned())
                .map_err(|e| Error::polars(format!("writing {}", path.display()), e))
        } else {
            parquet_writer(file, df.schema())
                .finish(df)
                .map(|_| ())
                .map_err(|e| Error::polars(format!("writing {}", path.display()), e))
        }
    })
}

/// `df` as the bytes of a Parquet file, for files written through the registry.
pub fn parquet_bytes(df: &mut DataFrame) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    parquet_writer(&mut out, &df.schema().clone())
        .finish(df)
        .map_err(|e| Error::polars("writing a Parquet table", e))?;
    Ok(out)
}

/// Like [`write_frame`], for a table produced in row chunks of one schema (the first
/// chunk's), so that only one chunk is in memory as a frame at a time. Returns the rows
/// and columns written.
pub fn write_frames(
    path: &Path,
    chunks: impl IntoIterator<Item = Result<DataFrame>>,
) -> Result<(usize, usize)> {
    let csv = output_format(path)? == OutputFormat::Csv;
    let shown = || format!("writing {}", path.display());
    let mut written = (0, 0);
    write_atomic_with(path, |file| {
        let mut chunks = chunks.into_iter();
        let first = chunks.next().unwrap_or_else(|| {
            Err(Error::Input {
                field: "rows".into(),
                message: format!("{}: nothing to write", path.display()),
            })
        })?;
        let schema = if csv {
            csv_ready(&first)?.schema().as_ref().clone()
        } else {
            first.schema().as_ref().clone()
        };
        written.1 = first.width();
        let rest = std::iter::once(Ok(first)).chain(chunks);
        // Both formats take the chunks the same way; only the writer differs.
        let feed = |write: &mut dyn FnMut(&DataFrame) -> PolarsResult<()>| {
            for df in rest {
                let df = df?;
                written.0 += df.height();
                let df = if csv {
                    csv_ready(&df)?
                } else {
                    Cow::Borrowed(&df)
                };
                write(&df).map_err(|e| Error::polars(shown(), e))?;
            }
            Ok::<_, Error>(())
        };
        if csv {
            let mut w = CsvWriter::new(file)
                .include_header(true)
                .batched(&schema)
                .map_err(|e| Error::polars(shown(), e))?;
            feed(&mut |df| w.write_batch(df))?;
            w.finish().map_err(|e| Error::polars(shown(), e))
        } else {
            let mut w = parquet_writer(file, &schema)
                .batched(&schema)
                .map_err(|e| Error::polars(shown(), e))?;
            feed(&mut |df| w.write_batch(df))?;
            w.finish()
                .map(|_| ())
                .map_err(|e| Error::polars(shown(), e))
        }
    })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(from: i64, n: i64) -> DataFrame {
        let ids: Vec<String> = (from..from + n).map(|i| format!("c{i}")).collect();
        let xs: Vec<Option<f64>> = (from..from + n)
            .map(|i| (i % 3 != 0).then_some(i as f64 / 2.0))
            .collect();
        df!("customer_id" => ids, "x" => xs).unwrap()
    }

    #[test]
    fn chunks_write_the_same_table_as_one_frame() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["parquet", "csv"] {
            let whole = dir.path().join(format!("whole.{ext}"));
            let parts = dir.path().join(format!("parts.{ext}"));
            write_frame(&mut frame(0, 10), &whole).unwrap();
            let chunks = [frame(0, 4), frame(4, 4), frame(8, 2)].map(Ok);
            assert_eq!(write_frames(&parts, chunks).unwrap(), (10, 2));
            let read = |p: &Path| -> DataFrame {
                if ext == "csv" {
                    CsvReadOptions::default()
                        .try_into_reader_with_file_path(Some(p.to_path_buf()))
                        .unwrap()
                        .finish()
                        .unwrap()
                } else {
                    ParquetReader::new(std::fs::File::open(p).unwrap())
                        .finish()
                        .unwrap()
                }
            };
            assert!(read(&whole).equals_missing(&read(&parts)), "{ext}");
        }
        assert!(write_frames(&dir.path().join("none.parquet"), []).is_err());
    }

    fn typed(from: i64, n: i64) -> DataFrame {
        let t0 = crate::time::parse_ts("2024-06-01").unwrap();
        let lists: Vec<Vec<&str>> = (from..from + n)
            .map(|i| ["a", "b", "c"][..(i % 3) as usize].to_vec())
            .collect();
        DataFrame::new(
            n as usize,
            vec![
                timestamp_column("as_of", (from..from + n).map(|i| t0 + i * 3600)),
                string_list_column("rules", lists.iter().map(|l| l.iter().copied())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn parquet_declares_large_strings_not_string_views() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, parts) = (dir.path().join("w.parquet"), dir.path().join("p.parquet"));
        write_frame(&mut typed(0, 4), &whole).unwrap();
        write_frames(&parts, [typed(0, 2), typed(2, 2)].map(Ok)).unwrap();
        let df = typed(0, 4);
        let key = |level| {
            polars_parquet::write::schema_to_metadata_key(&df.schema().to_arrow(level)).value
        };
        assert_ne!(key(CompatLevel::oldest()), key(CompatLevel::newest()));
        for path in [whole, parts] {
            let mut file = std::fs::File::open(&path).unwrap();
            let meta = polars_parquet::read::read_metadata(&mut file).unwrap();
            let stored: Vec<_> = meta
                .key_value_metadata
                .iter()
                .flatten()
                .filter(|kv| kv.key == "ARROW:schema")
                .map(|kv| kv.value.clone())
                .collect();
            assert_eq!(stored, [key(CompatLevel::oldest())], "{}", path.display());
        }
    }

    #[test]
    fn typed_columns_stay_typed_in_parquet_and_become_text_in_csv() {
        let dir = tempfile::tempdir().unwrap();
        let pq = dir.path().join("t.parquet");
        write_frame(&mut typed(0, 4), &pq).unwrap();
        let back = ParquetReader::new(std::fs::File::open(&pq).unwrap())
            .finish()
            .unwrap();
        assert_eq!(
            back.column("as_of").unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        );
        assert_eq!(
            back.column("rules").unwrap().dtype(),
            &DataType::List(Box::new(DataType::String))
        );
        assert!(back.equals_missing(&typed(0, 4)));

        let want = "as_of,rules\n\
                    2024-06-01T00:00:00Z,\n\
                    2024-06-01T01:00:00Z,a\n\
                    2024-06-01T02:00:00Z,\"a,b\"\n\
                    2024-06-01T03:00:00Z,\n";
        let whole = dir.path().join("whole.csv");
        write_frame(&mut typed(0, 4), &whole).unwrap();
        let text = std::fs::read_to_string(&whole).unwrap();
        // polars quotes an empty string; either way the cell holds no rule.
        assert_eq!(text.replace(",\"\"\n", ",\n"), want);
        let parts = dir.path().join("parts.csv");
        write_frames(&parts, [typed(0, 2), typed(2, 2)].map(Ok)).unwrap();
        assert_eq!(std::fs::read_to_string(&parts).unwrap(), text);
        assert!(!dir.path().join("none.parquet").exists());
    }

    #[test]
    fn only_parquet_and_csv_names_are_written() {
        let dir = tempfile::tempdir().unwrap();
        for ok in ["a.parquet", "b.CSV", "c.Parquet", "d.csv"] {
            write_frame(&mut frame(0, 3), &dir.path().join(ok)).unwrap();
        }
        for bad in ["x.txt", "noext", "y.parquet.tmp", "z.json"] {
            let path = dir.path().join(bad);
            let e = write_frame(&mut frame(0, 3), &path)
                .unwrap_err()
                .to_string();
            assert!(e.contains(".parquet` or `.csv"), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: {e}");
            let chunks = [frame(0, 2)].map(Ok);
            assert!(write_frames(&path, chunks).is_err(), "{bad}");
            assert!(!path.exists(), "{bad}");
        }
        assert!(output_format(Path::new("x.txt"))
            .unwrap_err()
            .to_string()
            .contains("unknown extension `.txt`"));
        assert!(output_format(Path::new("scores"))
            .unwrap_err()
            .to_string()
            .contains("no extension"));
    }
}
