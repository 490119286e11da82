//! Writing frames to Parquet or CSV atomically (through [`crate::fsutil`]).

use crate::fsutil::write_atomic_with;
use crate::{Error, Result};
use polars::prelude::*;
use std::path::Path;

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
/// either the old file or the complete new one.
pub fn write_frame(df: &mut DataFrame, path: &Path) -> Result<()> {
    let csv = output_format(path)? == OutputFormat::Csv;
    write_atomic_with(path, |file| {
        if csv {
            CsvWriter::new(file)
                .include_header(true)
                .finish(df)
                .map_err(|e| Error::polars(format!("writing {}", path.display()), e))
        } else {
            ParquetWriter::new(file)
                .finish(df)
                .map(|_| ())
                .map_err(|e| Error::polars(format!("writing {}", path.display()), e))
        }
    })
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
        let schema = first.schema().as_ref().clone();
        written.1 = first.width();
        let rest = std::iter::once(Ok(first)).chain(chunks);
        // Both formats take the chunks the same way; only the writer differs.
        let feed = |write: &mut dyn FnMut(&DataFrame) -> PolarsResult<()>| {
            for df in rest {
                let df = df?;
                written.0 += df.height();
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
            let mut w = ParquetWriter::new(file)
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
