//! Faults rehearsed with real processes: `kill -9` of `churnguard score` and `churnguard
//! train` while they are mid-work, and (with `tests/faults.sh`, which needs root) a full
//! disk under `--out` and `--models` on small tmpfs mounts.
//!
//! Each kill waits for the run's own progress line (`CHURNGUARD_LOG=info` logs every
//! stage) of a stage that is still writing, then sends SIGKILL, and checks that the
//! process really died of it (it had not finished), then the exact invariants: the
//! previous outputs, alert state and registry are byte for byte as they were, nothing a
//! reader could take for an output appeared, and what the killed run left (temporaries
//! beside the outputs, a `.tmp-*` version directory) is cleared by a later run.
//! The webhook and `serve` faults are in `alert_delivery`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use churnguard::synth::{generate, SynthConfig, SynthFormat};

use crate::common::{entries, sample_parquet, scratch};
use crate::pipeline::{alert_state, temporaries, trained};

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHURNGUARD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn churnguard(args: &[&str]) -> Output {
    command(args).output().expect("run churnguard")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs churnguard with `args`, logging its stages, and sends it SIGKILL the moment it
/// has logged a line containing `at` (within `limit`) and `then` holds (polled without
/// pause). Returns how it ended and its stderr.
fn kill_at(
    args: &[&str],
    at: &str,
    then: impl Fn() -> bool,
    limit: Duration,
) -> (ExitStatus, String) {
    let mut child = command(args)
        .env("CHURNGUARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start churnguard");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut seen = String::new();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(at);
                seen.push_str(&line);
                seen.push('\n');
                if hit {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("churnguard {args:?} never logged `{at}` within {limit:?}:\n{seen}");
            }
        }
    }
    while !then() {
        if started.elapsed() > limit || child.try_wait().unwrap().is_some() {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    drop(rx);
    let _ = reader.join();
    (status, seen)
}

/// Every file under `dir` with its bytes (directories by their paths), sorted.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel.join(""), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Sets the modification time of `path` (and, for a directory, its entries) to `ago`.
fn age(path: &Path, ago: Duration) {
    let when = SystemTime::now() - ago;
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            age(&e.unwrap().path(), ago);
        }
        let d = std::fs::File::open(path).unwrap();
        d.set_modified(when).unwrap();
    } else {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(when).unwrap();
    }
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A base big enough that a night's alert step (one transaction over every customer's
/// tier) takes long enough to be killed in: 30,000 customers, same schema as the sample.
fn big_base() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch("faults-big-base");
        let cfg = SynthConfig {
            customers: 30_000,
            seed: 23,
            format: SynthFormat::Parquet,
            ..SynthConfig::sample()
        };
        generate(&cfg, &dir, &|_| {}).expect("generate the big base");
        dir
    })
}

fn summary_of(out: &Path) -> PathBuf {
    churnguard::batch::summary_path(out)
}

#[test]
fn score_killed_mid_night_leaves_the_previous_night_and_its_alert_state_and_the_next_run_clears_its_temporaries(
) {
    let dir = scratch("faults-kill-score");
    let out = dir.join("scores.parquet");
    let outbox = dir.join("alerts.db");
    let (data, models) = (big_base().to_str().unwrap(), trained().to_str().unwrap());
    let night = |as_of: &str| {
        vec![
            "score".to_string(),
            "--data".into(),
            data.into(),
            "--models".into(),
            models.into(),
            "--as-of".into(),
            as_of.into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--outbox".into(),
            outbox.to_str().unwrap().into(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let first = night("2024-10-01");
    let done = churnguard(&args(&first));
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let scores_before = std::fs::read(&out).unwrap();
    let summary_before = std::fs::read(summary_of(&out)).unwrap();
    let state_before = alert_state(&outbox);
    let names_before = entries(&dir);
    assert!(state_before.len() > 10_000, "{}", state_before.len());

    // The next night, killed once its scores are staged and its alert step has begun.
    let second = night("2024-10-02");
    let (status, log) = kill_at(
        &args(&second),
        "stage=\"alerts\"",
        || true,
        Duration::from_secs(300),
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "killed mid-run, not finished:\n{log}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), scores_before);
    assert_eq!(std::fs::read(summary_of(&out)).unwrap(), summary_before);
    assert_eq!(alert_state(&outbox), state_before);
    let nights = rusqlite::Connection::open(&outbox)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM nights", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(nights, 1, "the killed night is not recorded");
    // What it left are dot-named temporaries of the outputs, nothing a reader of
    // `--out` or of the directory's `*.parquet` could pick up.
    let left = temporaries(&dir);
    assert!(
        !left.is_empty(),
        "killed while its scores were staged: {left:?}"
    );
    let mut names = entries(&dir);
    names.retain(|n| !left.contains(n) && !n.starts_with("alerts.db"));
    let mut expected = names_before.clone();
    expected.retain(|n| !n.starts_with("alerts.db"));
    assert_eq!(names, expected);

    // A run soon after keeps a temporary that may be a live writer's; once it is an
    // hour old, the next run removes it.
    for t in &left {
        age(&dir.join(t), Duration::from_secs(2 * 3600));
    }
    let retried = churnguard(&args(&second));
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    assert_eq!(temporaries(&dir), Vec::<String>::new());
    assert_ne!(std::fs::read(&out).unwrap(), scores_before);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary_of(&out)).unwrap()).unwrap();
    assert_eq!(summary["previous_night"], "2024-10-01", "{summary}");
}

/// The version directories (`vN`) of `models/churn`, sorted.
fn versions(models: &Path) -> Vec<String> {
    let mut v = entries(&models.join("churn"));
    v.retain(|n| n.starts_with('v'));
    v
}

fn version_temporaries(models: &Path) -> Vec<String> {
    let mut v = entries(&models.join("churn"));
    v.retain(|n| n.starts_with(churnguard::fsutil::TMP_PREFIX));
    v
}

#[test]
fn train_killed_while_fitting_or_publishing_leaves_the_registry_as_it_was() {
    let models = scratch("faults-kill-train").join("models");
    let _ = std::fs::remove_dir_all(&models);
    copy_tree(trained(), &models);
    let before = snapshot(&models);
    let (d, m) = (sample_parquet().to_str().unwrap(), models.to_str().unwrap());
    let train = [
        "train",
        "--data",
        d,
        "--models",
        m,
        "--algorithms",
        "logistic,gbdt",
    ];

    // Killed in the middle of fitting: nothing of the run exists yet.
    let (status, log) = kill_at(
        &train,
        "stage=\"fitting gbdt\"",
        || true,
        Duration::from_secs(300),
    );
    assert_eq!(status.signal(), Some(9), "{log}");
    assert_eq!(snapshot(&models), before);

    // Killed while publishing, once its `.tmp-*` version directory exists (its files
    // are being written, each fsynced): a run can miss that window, so a few tries; at
    // least one must land.
    let mut landed = 0;
    for _ in 0..4 {
        let (status, log) = kill_at(
            &train,
            "stage=\"publishing\"",
            || !version_temporaries(&models).is_empty(),
            Duration::from_secs(300),
        );
        if status.signal() != Some(9) {
            // Finished before the signal: a complete v2 (checked below); start again
            // from v1 for the next try.
            assert!(status.success(), "{log}");
            std::fs::remove_dir_all(&models).unwrap();
            copy_tree(trained(), &models);
            continue;
        }
        landed += 1;
        // Either no new version, or (killed after the rename) a complete one that
        // verifies; v1 and every other file of the registry are untouched.
        let now = snapshot(&models);
        for (path, bytes) in &before {
            if path.ends_with("aliases.json") && versions(&models).len() > 1 {
                continue; // the alias of a complete v2 may have been written
            }
            assert_eq!(now.get(path), Some(bytes), "{} changed", path.display());
        }
        for v in versions(&models) {
            let verify = churnguard(&["models", "verify", "--models", m, &v[1..]]);
            assert_eq!(verify.status.code(), Some(0), "{v}: {}", stderr(&verify));
        }
        let list = churnguard(&["models", "list", "--models", m]);
        assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
        if versions(&models) == ["v1"] {
            break;
        }
        std::fs::remove_dir_all(&models).unwrap();
        copy_tree(trained(), &models);
    }
    assert!(landed > 0, "no kill landed while publishing in 4 tries");
    assert_eq!(versions(&models), ["v1"], "a kill before the rename");
    let left = version_temporaries(&models);
    assert_eq!(left.len(), 1, "the killed publish's directory: {left:?}");
    let production = churnguard(&["models", "show", "--models", m]);
    assert_eq!(production.status.code(), Some(0), "{}", stderr(&production));

    // The next publish removes the leftover once it is an hour old.
    age(
        &models.join("churn").join(&left[0]),
        Duration::from_secs(2 * 3600),
    );
    let fast = [
        "train",
        "--data",
        d,
        "--models",
        m,
        "--algorithms",
        "logistic",
    ];
    let done = churnguard(&fast);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert_eq!(versions(&models), ["v1", "v2"]);
    assert_eq!(version_temporaries(&models), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// A full disk: needs `tests/faults.sh` (root), which mounts two small tmpfs at
// $CHURNGUARD_FAULTS_TMPFS/{out,models} and runs these with `-- --ignored`.

/// The tmpfs mount `$CHURNGUARD_FAULTS_TMPFS/<name>`; fails (never passes) without it.
fn tmpfs(name: &str) -> PathBuf {
    let root = std::env::var_os("CHURNGUARD_FAULTS_TMPFS").unwrap_or_else(|| {
        panic!("needs tests/faults.sh: CHURNGUARD_FAULTS_TMPFS is not set (no tmpfs mounted)")
    });
    let dir = PathBuf::from(root).join(name);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let target = dir.to_str().unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(target) && l.split(' ').nth(2) == Some("tmpfs")),
        "needs tests/faults.sh: {target} is not a tmpfs mount"
    );
    dir
}

/// Fills the filesystem of `dir` until only `leave` bytes (about) are free; the filler
/// file, to remove afterwards.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let free = fs2::available_space(dir).unwrap();
    let mut left = free.saturating_sub(leave);
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0xa5u8; 1 << 16];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let now = fs2::available_space(dir).unwrap();
    assert!(now <= leave + 4096, "{now} bytes free, wanted {leave}");
    filler
}

#[test]
#[ignore = "needs tests/faults.sh"]
fn full_disk_under_out_fails_clearly_and_leaves_the_previous_night() {
    let dir = tmpfs("out").join("night");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("scores.parquet");
    // The alert state on a disk with room: the fault is the score file's.
    let outbox = scratch("faults-full-out").join("alerts.db");
    let _ = std::fs::remove_file(&outbox);
    let (d, m) = (
        sample_parquet().to_str().unwrap(),
        trained().to_str().unwrap(),
    );
    let (o, b) = (out.to_str().unwrap(), outbox.to_str().unwrap());
    let night = |as_of: &'static str| {
        churnguard(&[
            "score", "--data", d, "--models", m, "--as-of", as_of, "--out", o, "--outbox", b,
        ])
    };
    let first = night("2024-10-01");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let scores_before = std::fs::read(&out).unwrap();
    let summary_before = std::fs::read(summary_of(&out)).unwrap();
    let state_before = alert_state(&outbox);
    let names_before = entries(&dir);

    // Room for half a score file: the write fails part-way.
    let filler = fill(&dir, scores_before.len() as u64 / 2);
    let failed = night("2024-10-02");
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(dir.to_str().unwrap()),
        "names the place: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), scores_before);
    assert_eq!(std::fs::read(summary_of(&out)).unwrap(), summary_before);
    assert_eq!(alert_state(&outbox), state_before);
    assert_eq!(
        temporaries(&dir),
        Vec::<String>::new(),
        "nothing half-written"
    );
    let mut names = entries(&dir);
    names.retain(|n| n != "filler");
    assert_eq!(names, names_before);

    // Room again: the same night goes through.
    std::fs::remove_file(&filler).unwrap();
    let retried = night("2024-10-02");
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    assert_ne!(std::fs::read(&out).unwrap(), scores_before);
}

#[test]
#[ignore = "needs tests/faults.sh"]
fn full_disk_under_models_fails_clearly_and_leaves_the_registry() {
    let models = tmpfs("models").join("registry");
    let _ = std::fs::remove_dir_all(&models);
    copy_tree(trained(), &models);
    let before = snapshot(&models);
    let (d, m) = (sample_parquet().to_str().unwrap(), models.to_str().unwrap());
    let train = [
        "train",
        "--data",
        d,
        "--models",
        m,
        "--algorithms",
        "logistic",
    ];
    // Room for 32 KiB: the first of the version's files (model.bin) fits, the report
    // does not; the write fails part-way.
    let filler = fill(models.parent().unwrap(), 32 * 1024);
    let failed = churnguard(&train);
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(m), "names the place: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        snapshot(&models),
        before,
        "registry untouched, no .tmp-* left"
    );

    std::fs::remove_file(&filler).unwrap();
    let done = churnguard(&train);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert_eq!(versions(&models), ["v1", "v2"]);
}
