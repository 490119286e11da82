//! The `churnguard` binary as a user or a scheduler meets it: exit codes, error lines,
//! refusals that happen before any work, and `--log-json` on every stderr line.

use crate::common::{entries, sample_parquet, scratch};
use crate::pipeline::trained;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args` and no `CHURNGUARD_*` or `RUST_LOG` from the test's own
/// environment; kills it (and fails) if it runs past `limit`.
fn churnguard_within(args: &[&str], limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHURNGUARD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("start churnguard");
    let started = Instant::now();
    while child.try_wait().expect("wait for churnguard").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "churnguard {args:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("churnguard output")
}

fn churnguard(args: &[&str]) -> Output {
    churnguard_within(args, Duration::from_secs(120))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every stderr line parsed as a JSON object (panics on one that is not).
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    let text = stderr(out);
    assert!(!text.trim().is_empty(), "nothing on stderr");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\nstderr:\n{text}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

#[test]
fn a_command_line_that_does_not_parse_exits_2_and_a_failed_run_exits_1() {
    for args in [
        &["score", "--no-such-flag"][..],
        &["no-such-command"],
        &["score"], // required --as-of and --out missing
    ] {
        let out = churnguard(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(churnguard(&["--help"]).status.code(), Some(0));
    let missing = scratch("cli-exit").join("no-such-dir");
    let out = churnguard(&["inspect", "--data", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_wrong_data_path_prints_the_os_error_once() {
    let missing = scratch("cli-data").join("no-such-dir");
    let out = churnguard(&["inspect", "--data", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    // "No such file or directory (os error 2)" on Linux.
    let os_error = std::io::Error::from_raw_os_error(2).to_string();
    assert_eq!(err.matches(&os_error).count(), 1, "{err}");
}

#[test]
fn an_output_table_that_is_neither_parquet_nor_csv_is_refused_before_any_work() {
    let dir = scratch("cli-out-ext");
    let data = sample_parquet().to_str().unwrap();
    let models = dir.join("models");
    let models = models.to_str().unwrap();
    let out = dir.join("x.txt");
    let run = churnguard(&[
        "score",
        "--data",
        data,
        "--models",
        models,
        "--as-of",
        "2024-11-15",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("x.txt"), "{err}");
    assert!(err.contains("`.parquet` or `.csv`"), "{err}");
    let feat = dir.join("features.TXT");
    let run = churnguard(&[
        "features",
        "--data",
        data,
        "--as-of",
        "2024-11-15",
        "--out",
        feat.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("`.parquet` or `.csv`"));
    // Nothing written, not even the registry's alert state.
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
}

#[test]
fn serve_refuses_a_registry_that_does_not_exist_and_creates_nothing() {
    let dir = scratch("cli-serve-nowhere");
    let nowhere = dir.join("nowhere");
    let out = churnguard_within(
        &[
            "serve",
            "--models",
            nowhere.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such directory"),
        "{}",
        stderr(&out)
    );
    assert!(!nowhere.exists());
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
}

#[test]
fn log_json_makes_every_stderr_line_json_errors_and_usage_errors_included() {
    let missing = scratch("cli-json").join("no-such-dir");
    let out = churnguard(&["--log-json", "inspect", "--data", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR", "{last}");
    let message = last["fields"]["message"].as_str().unwrap();
    assert!(message.contains("no-such-dir"), "{last}");

    let out = churnguard(&["score", "--no-such-flag", "--log-json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert!(lines[0]["fields"]["message"]
        .as_str()
        .unwrap()
        .contains("--no-such-flag"));
}

#[test]
fn log_json_covers_the_batch_done_line_of_a_nightly_run() {
    let dir = scratch("cli-json-night");
    let out = dir.join("scores.parquet");
    let outbox = dir.join("alerts.db");
    let run = churnguard(&[
        "--log-json",
        "score",
        "--data",
        sample_parquet().to_str().unwrap(),
        "--models",
        trained().to_str().unwrap(),
        "--as-of",
        "2024-11-15",
        "--out",
        out.to_str().unwrap(),
        "--outbox",
        outbox.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let lines = json_lines(&run);
    let done = lines
        .iter()
        .find(|l| l["fields"]["event"] == "batch_done")
        .unwrap_or_else(|| panic!("no batch_done line in {lines:?}"));
    assert!(done["fields"]["message"]
        .as_str()
        .unwrap()
        .starts_with("batch_done as_of=2024-11-15 customers="));
    assert!(done["fields"]["customers"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["fields"]["as_of"], "2024-11-15");
}

/// Copies `from` to `to` with one byte of its Parquet footer changed: the first change
/// (a few bit masks, byte by byte) that makes polars' own reader panic, so the copy is the case the library must
/// contain (most flips give an ordinary polars error instead).
fn parquet_that_panics_polars(from: &Path, to: &Path) {
    use polars::prelude::{ParquetReader, SerReader};
    let good = std::fs::read(from).unwrap();
    let n = good.len();
    let len = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap()) as usize;
    for mask in [0xff, 0x80, 0x01, 0x40] {
        for at in n - 8 - len..n - 8 {
            let mut bad = good.clone();
            bad[at] ^= mask;
            std::fs::write(to, &bad).unwrap();
            let file = std::fs::File::open(to).unwrap();
            if std::panic::catch_unwind(|| ParquetReader::new(file).finish()).is_err() {
                return;
            }
        }
    }
    panic!(
        "no flipped footer byte of {} makes polars panic",
        from.display()
    );
}

/// Exit 1 with the file named and no panic message (before: exit 101 and polars'
/// `panicked at ...`).
fn refused_as_unreadable(out: &Output, file: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("not a readable Parquet file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_corrupt_parquet_footer_fails_inspect_and_train_with_the_file_named_not_a_panic() {
    let dir = scratch("cli-corrupt-base");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(sample_parquet()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let customers = data.join("customers.parquet");
    parquet_that_panics_polars(&sample_parquet().join("customers.parquet"), &customers);
    let d = data.to_str().unwrap();
    refused_as_unreadable(&churnguard(&["inspect", "--data", d]), &customers);
    let models = dir.join("models");
    let m = models.to_str().unwrap();
    refused_as_unreadable(
        &churnguard(&["train", "--data", d, "--models", m]),
        &customers,
    );
    // A logins file (read in batches of row groups) too.
    std::fs::copy(sample_parquet().join("customers.parquet"), &customers).unwrap();
    let logins = data.join("logins.parquet");
    parquet_that_panics_polars(&sample_parquet().join("logins.parquet"), &logins);
    refused_as_unreadable(&churnguard(&["inspect", "--data", d]), &logins);
}

#[test]
fn backtest_of_a_corrupt_score_file_exits_1_with_the_file_named_not_a_panic() {
    let dir = scratch("cli-corrupt-scores");
    let good = dir.join("scores.parquet");
    let data = sample_parquet().to_str().unwrap();
    let models = trained().to_str().unwrap();
    let run = churnguard(&[
        "score",
        "--data",
        data,
        "--models",
        models,
        "--as-of",
        "2024-10-15",
        "--out",
        good.to_str().unwrap(),
        "--outbox",
        dir.join("alerts.db").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let bad = dir.join("corrupt.parquet");
    parquet_that_panics_polars(&good, &bad);
    let b = bad.to_str().unwrap();
    let out = churnguard(&[
        "backtest", "--scores", b, "--data", data, "--models", models,
    ]);
    refused_as_unreadable(&out, &bad);
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

#[test]
fn models_list_and_verify_report_every_unreadable_manifest_and_go_on() {
    // Issue 15 (f): both stopped at the first version whose manifest could not be read.
    let models = scratch("cli-broken-manifests");
    let churn = models.join("churn");
    copy_tree(&trained().join("churn"), &churn);
    for v in ["v2", "v3"] {
        copy_tree(&churn.join("v1"), &churn.join(v));
        let path = churn.join(v).join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["version"] = v.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    std::fs::write(churn.join("v1/manifest.json"), b"{\"version\": ").unwrap();
    std::fs::remove_file(churn.join("v3/manifest.json")).unwrap();
    let models = models.to_str().unwrap();

    let list = churnguard(&["models", "list", "--models", models]);
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert_eq!(list.status.code(), Some(0), "{text}{}", stderr(&list));
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].starts_with("v1") && rows[0].contains("UNREADABLE"),
        "{text}"
    );
    assert!(rows[0].contains("manifest.json"), "{text}");
    assert!(
        rows[1].starts_with("v2") && !rows[1].contains("UNREADABLE"),
        "{text}"
    );
    assert!(
        rows[2].starts_with("v3") && rows[2].contains("the file is missing"),
        "{text}"
    );
    assert!(stderr(&list).contains("2 version(s) with an unreadable manifest"));

    let verify = churnguard(&["models", "verify", "--models", models]);
    let text = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert_eq!(verify.status.code(), Some(1), "{text}{}", stderr(&verify));
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].starts_with("v1: FAILED") && rows[0].contains("manifest.json"),
        "{text}"
    );
    assert_eq!(rows[1], "v2: ok", "{text}");
    assert!(rows[2].starts_with("v3: FAILED"), "{text}");
    assert!(
        stderr(&verify).contains("2 version(s) failed verification"),
        "{}",
        stderr(&verify)
    );
}

/// Issue 15 (f): one login dated 9999 passed `inspect` (its time range ending in 9999)
/// and `train`, which laid its snapshots out up to 9999 and failed with "0 churned".
/// Now the row is a bad row, named by table, file, row and column, for both commands.
#[test]
fn a_row_dated_9999_is_refused_by_inspect_and_train_with_its_table_file_row_and_column() {
    let dir = scratch("future-row").join("data");
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(crate::common::sample_csv(), &dir);
    let logins = dir.join("logins.csv");
    let text = std::fs::read_to_string(&logins).unwrap();
    let id = text
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let row = text.lines().count(); // the header, then rows 1.. : the appended one is this
    std::fs::write(&logins, format!("{text}{id},9999-01-01\n")).unwrap();
    let expected = format!(
        "table `logins` ({}), row {row}, column `at`: 9999-01-01T00:00:00Z is after ",
        logins.display()
    );
    let (d, m) = (dir.to_str().unwrap(), scratch("future-row").join("models"));
    let inspect = churnguard(&["inspect", "--data", d]);
    assert_eq!(inspect.status.code(), Some(1), "{}", stderr(&inspect));
    assert!(stderr(&inspect).contains(&expected), "{}", stderr(&inspect));
    let train = churnguard(&["train", "--data", d, "--models", m.to_str().unwrap()]);
    let err = stderr(&train);
    assert_eq!(train.status.code(), Some(1), "{err}");
    assert!(err.contains(&expected), "{err}");
    assert!(!err.contains("churned"), "{err}");
    assert!(!m.join("churn").exists(), "nothing published");
    // Skipped, it is counted and the data ends where the real rows end.
    let skipped = churnguard(&["inspect", "--data", d, "--skip-bad-rows"]);
    let out = String::from_utf8_lossy(&skipped.stdout);
    assert_eq!(skipped.status.code(), Some(0), "{}", stderr(&skipped));
    let range = out.lines().find(|l| l.contains("time range:")).unwrap();
    assert!(!range.contains("9999"), "{out}");
    assert!(out.contains("skipped: table `logins`"), "{out}");
    assert!(out.contains(&format!("row {row}, column `at`")), "{out}");
}
