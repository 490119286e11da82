//! Writing frames to Parquet or CSV atomically (temporary file, fsync, rename).

use crate::{Error, Result};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The temporary sibling a file is written to before being renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `df` to `path` as Parquet or CSV (by extension: `.csv` is CSV, anything else
/// Parquet), so that readers see either the old file or the complete new one.
pub fn write_frame(df: &mut DataFrame, path: &Path) -> Result<()> {
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    write_atomic(path, |file| {
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

/// Writes through `f` into a temporary file, fsyncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f(&mut file)?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    write_atomic(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}
