//! Replacing files atomically: the one write-temporary, fsync, rename, fsync-directory
//! sequence every writer of a score file, report, summary, alias file or table uses.
//!
//! Readers see either the old file or the complete new one, never a truncated file; a
//! write that fails leaves the old file untouched and no temporary file behind.
//! A job whose files must appear with a database commit stages them ([`stage_with`],
//! [`Staged::keep`]), records them in the commit and renames them afterwards
//! ([`rename_into_place`]); [`remove_stale_temps`] clears what a killed writer left.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Prefix of every temporary file, so crash leftovers are recognisable (the registry
/// cleans stale ones).
pub const TMP_PREFIX: &str = ".tmp-";

/// A complete, fsynced temporary file beside `path`, not yet in place: [`Staged::commit`]
/// renames it over `path`; dropped uncommitted, it is removed. A job whose outputs must
/// appear together with a database commit [`Staged::keep`]s them, records the pair in
/// that commit and renames afterwards (rolled forward after a crash).
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Staged {
    /// Where the file will be.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over its path and fsyncs the directory.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tmp
            .persist(&path)
            .map_err(|e| Error::io(&path, e.error))?;
        // Best effort: the new file is in place; failing the run now would misreport it.
        let _ = sync_dir(parent_dir(&path));
        Ok(())
    }

    /// Keeps the temporary file past this process (no removal on drop): `(temporary,
    /// final path)`, for [`rename_into_place`] once the caller's commit is durable.
    pub fn keep(self) -> Result<(PathBuf, PathBuf)> {
        let tmp = self
            .tmp
            .into_temp_path()
            .keep()
            .map_err(|e| Error::io(&self.path, e.error))?;
        Ok((tmp, self.path))
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes through `f` into a temporary file in `path`'s directory (created if needed)
/// and fsyncs it: a [`Staged`] file, not yet in place.
pub fn stage_with(path: &Path, f: impl FnOnce(&mut File) -> Result<()>) -> Result<Staged> {
    let dir = parent_dir(path);
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
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
    })
}

/// Writes through `f` into a temporary file in `path`'s directory (created if needed),
/// fsyncs it, renames it over `path` and fsyncs the directory.
pub fn write_atomic_with(path: &Path, f: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    stage_with(path, f)?.commit()
}

/// Renames a kept [`Staged`] file over `path` and fsyncs the directory. A `tmp` that is
/// gone was renamed already (a roll-forward that had started): nothing to do.
pub fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    match std::fs::rename(tmp, path) {
        Ok(()) => {
            let _ = sync_dir(parent_dir(path));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !tmp.exists() => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Removes the temporary files of `path` ([`stage_with`]'s `.tmp-<name>.*.tmp` beside
/// it) last modified more than `older_than` ago: what a killed writer left. Best effort;
/// returns how many were removed.
pub fn remove_stale_temps(path: &Path, older_than: std::time::Duration) -> usize {
    let dir = parent_dir(path);
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return 0;
    };
    let prefix = format!("{TMP_PREFIX}{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        if !(n.starts_with(&prefix) && n.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > older_than));
        if old && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
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
    fn a_staged_file_appears_only_when_committed_and_vanishes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        write_atomic(&path, b"old").unwrap();
        let stage = |bytes: &'static [u8]| {
            stage_with(&path, |f| {
                f.write_all(bytes).map_err(|e| Error::io(&path, e))
            })
            .unwrap()
        };
        drop(stage(b"dropped"));
        assert_eq!(entries(dir.path()), ["scores.csv"]);
        let staged = stage(b"new");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let (tmp, to) = stage(b"kept").keep().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        rename_into_place(&tmp, &to).unwrap();
        // Renaming again (a roll-forward that had already happened) is not an error.
        rename_into_place(&tmp, &to).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(entries(dir.path()), ["scores.csv"]);
    }

    #[test]
    fn only_old_temporaries_of_the_named_file_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.parquet");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let make = |name: &str, aged: bool| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            if aged {
                File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
        };
        make(".tmp-scores.parquet.a1.tmp", true);
        make(".tmp-scores.parquet.b2.tmp", false);
        make(".tmp-other.parquet.c3.tmp", true);
        make("scores.parquet", true);
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(remove_stale_temps(&path, hour), 1);
        assert_eq!(
            entries(dir.path()),
            [
                ".tmp-other.parquet.c3.tmp",
                ".tmp-scores.parquet.b2.tmp",
                "scores.parquet"
            ]
        );
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
