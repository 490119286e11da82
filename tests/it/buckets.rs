//! Issue 13 target 2: a base larger than `--memory-budget` is scored in customer
//! buckets, and the night is the one the whole base gives: the same score file and
//! history partition bytes, the same summary but for its timings, the same alert state,
//! alerts and nights, the same refusals.

use crate::common::{entries, sample_csv, sample_parquet, scratch};
use crate::pipeline::trained;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `churnguard` without the test's own `CHURNGUARD_*` environment.
fn churnguard(args: &[&str]) -> Output {
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
    cmd.output().expect("run churnguard")
}

/// A budget the 2,000-customer sample fits in whole, and one it needs buckets for.
const WHOLE: &str = "64GiB";
const TINY: &str = "600KiB";

/// One night of `score` on `data` into `dir` (its outbox, alerts log and history there).
fn night(data: &Path, dir: &Path, as_of: &str, budget: &str) -> Output {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    churnguard(&[
        "--log-json",
        "score",
        "--data",
        data.to_str().unwrap(),
        "--models",
        trained().to_str().unwrap(),
        "--as-of",
        as_of,
        "--out",
        &p("scores.parquet"),
        "--outbox",
        &p("alerts.db"),
        "--alerts",
        &p("alerts.jsonl"),
        "--memory-budget",
        budget,
    ])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The summary without what differs between two runs of one night (timings, the path).
fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read(dir.join("scores.parquet.summary.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("seconds").expect("timings");
    o.remove("output").expect("output path");
    v
}

/// Every row of the outbox's tables but for the wall-clock columns, in key order.
fn outbox_rows(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("alerts.db")).unwrap();
    let mut out = Vec::new();
    let queries = [
        "SELECT customer_id || '|' || last_tier || '|' || last_scored_at || '|' || \
         IFNULL(last_alert_at, '') || '|' || IFNULL(last_alert_tier, '') \
         FROM customer_state ORDER BY customer_id",
        "SELECT seq || '|' || idempotency_key || '|' || customer_id || '|' || tier || '|' || \
         source || '|' || status FROM alerts ORDER BY seq",
        "SELECT seq || '|' || as_of || '|' || model || '|' || customers || '|' || tiers || \
         '|' || status || '|' || IFNULL(reason, '') || '|' || IFNULL(detail, '') || '|' || \
         alerts_new FROM nights ORDER BY seq",
    ];
    for q in queries {
        let mut stmt = conn.prepare(q).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// The alerts log's alerts without their wall-clock instants, by customer (the
/// dispatcher delivers concurrently, so the log's line order is not the night's).
fn alerts_log(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap_or_default();
    let mut alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("raised_at").expect("raised_at");
            o.remove("due_at");
            v
        })
        .collect();
    alerts.sort_by_key(|a| a["customer_id"].as_str().unwrap().to_string());
    alerts
}

/// Every file under `dir` (recursively) and its bytes, but for the outbox, the alerts
/// log and the summary, compared on their own.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("alerts.") || name.ends_with(".summary.json") {
                continue;
            }
            out.push((
                p.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// Both runs' nights on `data` the same, night after night.
fn same_nights(data: &Path, name: &str, nights: &[&str]) {
    let whole = scratch(&format!("{name}-whole"));
    let split = scratch(&format!("{name}-split"));
    for as_of in nights {
        let w = night(data, &whole, as_of, WHOLE);
        let s = night(data, &split, as_of, TINY);
        assert_eq!(w.status.code(), Some(0), "{}", stderr(&w));
        assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
        let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            stdout(&s).contains("customer buckets"),
            "the tiny budget did not bucket: {}",
            stdout(&s)
        );
        assert!(!stdout(&w).contains("customer buckets"), "{}", stdout(&w));
        let (fw, fs) = (files(&whole), files(&split));
        assert_eq!(
            fw.iter().map(|f| &f.0).collect::<Vec<_>>(),
            fs.iter().map(|f| &f.0).collect::<Vec<_>>(),
            "{as_of}: the files written (the buckets' directory must be gone)"
        );
        for ((path, a), (_, b)) in fw.iter().zip(&fs) {
            assert!(a == b, "{as_of}: {} differs", path.display());
        }
        assert_eq!(summary(&whole), summary(&split), "{as_of}: summary");
        assert_eq!(outbox_rows(&whole), outbox_rows(&split), "{as_of}: outbox");
        assert_eq!(
            alerts_log(&whole),
            alerts_log(&split),
            "{as_of}: alerts log"
        );
    }
    assert!(
        entries(&split).iter().all(|n| !n.contains("bucket")),
        "{:?}",
        entries(&split)
    );
}

#[test]
fn a_parquet_base_scored_in_buckets_gives_the_whole_bases_nights_byte_for_byte() {
    // Thirty days apart: the second night's trend reads the first night's history.
    same_nights(
        sample_parquet(),
        "buckets-parquet",
        &["2024-10-16", "2024-11-15", "2024-11-16"],
    );
}

#[test]
fn a_csv_base_scored_in_buckets_gives_the_whole_bases_night_byte_for_byte() {
    same_nights(sample_csv(), "buckets-csv", &["2024-11-15"]);
}

#[test]
fn a_bucketed_night_is_refused_as_the_whole_one_and_leaves_no_buckets_behind() {
    let whole = scratch("buckets-refused-whole");
    let split = scratch("buckets-refused-split");
    // Long after the data ends: the freshness guard refuses the night.
    let w = night(sample_parquet(), &whole, "2025-06-01", WHOLE);
    let s = night(sample_parquet(), &split, "2025-06-01", TINY);
    assert_eq!(w.status.code(), Some(3), "refused: {}", stderr(&w));
    assert_eq!(s.status.code(), Some(3), "refused: {}", stderr(&s));
    let error = |o: &Output| -> Vec<serde_json::Value> {
        stderr(o)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "ERROR")
            .map(|v| v["fields"]["message"].clone())
            .collect()
    };
    assert!(!error(&w).is_empty(), "{}", stderr(&w));
    assert_eq!(error(&w), error(&s));
    assert_eq!(outbox_rows(&whole), outbox_rows(&split));
    assert_eq!(entries(&whole), entries(&split));
    assert!(
        entries(&split).iter().all(|n| !n.contains("bucket")),
        "{:?}",
        entries(&split)
    );
}
