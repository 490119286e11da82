//! Replacing files atomically: the one write-temporary, fsync, rename, fsync-directory
//! sequence every writer of a score file, report, summary, alias file or table uses.
//!
//! Readers see either the old file or the complete new one, never a truncated file; a
//! write that fails leaves the old file untouched and no temporary file behind.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Prefix of every temporary file, so crash leftovers are recognisable (the registry
/// cleans stale ones).
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes through `f` into a temporary file in `path`'s directory (created if needed),
/// fsyncs it, renames it over `path` and fsyncs the directory.
pub fn write_atomic_with(path: &Path, f: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dropped (and so removed) on every early return below.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    f(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(&tmp_path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Best effort: the new file is in place; failing the run now would misreport it.
    let _ = sync_dir(dir);
    Ok(())
}

/// Replaces `path` with `bytes` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Creates `path` (which must not exist), writes `bytes` and fsyncs it: for files inside
/// a directory that is itself renamed into place afterwards.
pub fn write_new_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Fsyncs a directory so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("out.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(entries(&dir.path().join("sub")), ["out.json"]);
    }

    #[test]
    fn a_write_that_fails_half_way_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        write_atomic(&path, b"previous night").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half a fi").unwrap();
            Err(Error::io(
                &path,
                std::io::Error::other("disk full (simulated)"),
            ))
        })
        .unwrap_err();
        assert!(err.chain().to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"previous night");
        assert_eq!(entries(dir.path()), ["scores.csv"]);
    }

    #[test]
    fn write_new_synced_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_new_synced(&path, b"a").unwrap();
        assert!(write_new_synced(&path, b"b").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"a");
    }
}
