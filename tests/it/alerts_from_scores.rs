//! `alerts --scores` (`batch::alerts_from_scores`): the alert stage of `score` over a
//! score table written elsewhere raises exactly the alerts `score` raises that night,
//! once, whether the table is one file or a directory of parts (a Spark job's output).

use crate::common::{load_dir, sample_parquet, scratch};
use crate::pipeline::{scorer, trained};
use churnguard::alerts::{AlertPolicy, RetryPolicy, TaskConfig};
use churnguard::batch::{self, BatchOptions, InputGuard, ScoresAlertOptions};
use churnguard::registry::Registry;
use churnguard::scores;
use churnguard::time::parse_ts;
use serde_json::Value;
use std::path::Path;

fn alerts_options(dir: &Path, name: &str) -> ScoresAlertOptions {
    ScoresAlertOptions {
        outbox: Some(dir.join(format!("{name}.db"))),
        policy: AlertPolicy::default(),
        alerts_log: Some(dir.join(format!("{name}.jsonl"))),
        webhook: None,
        retry: RetryPolicy::default(),
        task: TaskConfig::default(),
        rules: None,
    }
}

/// Every alert of a JSON-lines file by customer id.
fn alerts(path: &Path) -> std::collections::BTreeMap<String, Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|a| (a["customer_id"].as_str().unwrap().to_string(), a))
        .collect()
}

/// Without the times of the raising itself.
fn timeless(mut a: Value) -> Value {
    for f in ["raised_at", "due_at"] {
        a.as_object_mut().unwrap().remove(f);
    }
    a
}

#[test]
fn alerts_from_a_score_file_in_parts_are_the_nights_alerts_once() {
    let dir = scratch("alerts-from-scores");
    let registry = Registry::new(trained());
    let scorer = scorer();
    let base = load_dir(sample_parquet());
    let opts = BatchOptions {
        as_of: parse_ts("2024-10-01").unwrap(),
        out: dir.join("scores.parquet"),
        alerts_log: Some(dir.join("score.jsonl")),
        outbox: dir.join("score.db"),
        policy: AlertPolicy::default(),
        webhook: None,
        guard: InputGuard::default(),
        contributions: false,
        retry: RetryPolicy::default(),
        metrics_textfile: None,
        history: dir.join("history"),
        task: TaskConfig::default(),
        loading_seconds: None,
    };
    let night = batch::run(&base, &scorer, &opts, &|_| {}).unwrap();
    let want = alerts(&dir.join("score.jsonl"));
    assert!(night.alerts_new > 3, "{}", night.alerts_new);
    assert_eq!(want.len(), night.alerts_new);

    // The score file as a Spark job writes it: Parquet parts and a `_SUCCESS` marker.
    let whole = scores::read_table(&opts.out).unwrap();
    let parts = dir.join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let half = whole.height() / 2;
    let mut first = whole.slice(0, half);
    let mut second = whole.slice(half as i64, whole.height() - half);
    churnguard::data::write::write_frame(&mut first, &parts.join("part-00000.parquet")).unwrap();
    churnguard::data::write::write_frame(&mut second, &parts.join("part-00001.parquet")).unwrap();
    std::fs::write(parts.join("_SUCCESS"), "").unwrap();
    let table = scores::read_table(&parts).unwrap();
    assert_eq!(table.height(), whole.height());

    // From the table alone: the same customers and idempotency keys, once.
    let o = alerts_options(&dir, "parts");
    let got = batch::alerts_from_scores(&table, &parts, &registry, None, &o).unwrap();
    assert_eq!(
        (
            got.customers,
            got.alerts_raised,
            got.alerts_new,
            got.alerts_delivered
        ),
        (night.customers_scored, want.len(), want.len(), want.len())
    );
    assert_eq!(got.as_of, "2024-10-01");
    let from_parts = alerts(&dir.join("parts.jsonl"));
    let keys = |m: &std::collections::BTreeMap<String, Value>| -> Vec<(String, String)> {
        m.iter()
            .map(|(c, a)| {
                (
                    c.clone(),
                    a["idempotency_key"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(keys(&from_parts), keys(&want));
    for (c, a) in &from_parts {
        let w = &want[c];
        for f in [
            "tier",
            "previous_tier",
            "churn_probability",
            "reasons",
            "dimensions",
            "primary_driver",
        ] {
            assert_eq!(a[f], w[f], "{c}: {f}");
        }
        // The table names the rules that fired, not every value behind them.
        let rules = |a: &Value| -> Vec<Value> {
            let hits = a["summary"]["early_warnings"].as_array().unwrap().clone();
            hits.iter().map(|h| h["rule"].clone()).collect()
        };
        assert_eq!(rules(a), rules(w), "{c}");
    }
    let again = batch::alerts_from_scores(&table, &parts, &registry, None, &o).unwrap();
    assert_eq!((again.alerts_raised, again.alerts_new), (0, 0));
    assert_eq!(alerts(&dir.join("parts.jsonl")), from_parts);

    // With the customer base, the alerts are `score`'s to the byte but for when raised.
    let o = alerts_options(&dir, "with-base");
    batch::alerts_from_scores(&whole, &opts.out, &registry, Some(&base), &o).unwrap();
    let with_base = alerts(&dir.join("with-base.jsonl"));
    assert_eq!(with_base.len(), want.len());
    for (c, a) in with_base {
        assert_eq!(timeless(a), timeless(want[&c].clone()), "{c}");
    }
}

#[test]
fn a_score_table_of_two_nights_is_refused_with_the_row_named() {
    let dir = scratch("alerts-two-nights");
    let registry = Registry::new(trained());
    let scorer = scorer();
    let base = load_dir(sample_parquet());
    let t = parse_ts("2024-09-01").unwrap();
    let a = batch::score_frame(&base, &scorer, t, &InputGuard::default(), false).unwrap();
    let b = batch::score_frame(&base, &scorer, t + 86_400, &InputGuard::default(), false).unwrap();
    let mut both = a.clone();
    both.vstack_mut_owned(b).unwrap();
    let err = batch::alerts_from_scores(
        &both,
        Path::new("frame"),
        &registry,
        None,
        &alerts_options(&dir, "two"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("row {}", a.height() + 1)), "{err}");
    assert!(err.contains("one night's"), "{err}");
    assert!(!dir.join("two.db").exists(), "nothing recorded");
}
