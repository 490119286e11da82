//! Shared fixtures: a generated sample (once per test process) and file helpers.

use churnguard::data::{load, CustomerBase, LoadOptions};
use churnguard::synth::{generate, SynthConfig, SynthFormat};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A directory that lives for the whole test process.
pub fn scratch(name: &str) -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let p = root.path().join(name);
    std::fs::create_dir_all(&p).expect("create scratch dir");
    p
}

/// A 2,000-customer generated base as CSV (so tests can edit rows as text).
pub fn sample_csv() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("sample-csv");
        let cfg = SynthConfig {
            customers: 2000,
            seed: 11,
            format: SynthFormat::Csv,
            ..SynthConfig::sample()
        };
        generate(&cfg, &dir, &|_| {}).expect("generate csv sample");
        dir
    })
}

/// The same base as Parquet.
pub fn sample_parquet() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("sample-parquet");
        let cfg = SynthConfig {
            customers: 2000,
            seed: 11,
            format: SynthFormat::Parquet,
            ..SynthConfig::sample()
        };
        generate(&cfg, &dir, &|_| {}).expect("generate parquet sample");
        dir
    })
}

/// Loads a directory strictly.
pub fn load_dir(dir: &Path) -> CustomerBase {
    load(dir, &LoadOptions::default()).expect("load customer base")
}

/// Writes `files` (name, content) into a fresh directory of its own, so tests
/// running in parallel with the same `name` never share (or clean) one.
pub fn write_tables(name: &str, files: &[(&str, &str)]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = scratch(&format!("{name}-{n}"));
    for (f, content) in files {
        std::fs::write(dir.join(f), content).expect("write table");
    }
    dir
}

/// Equal, treating NaN as equal to NaN.
pub fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
