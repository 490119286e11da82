//! Features at T never see rows at or after T.

use crate::common::{load_dir, same, sample_csv, scratch};
use churnguard::churn::{population, ChurnDefinition};
use churnguard::features::{Bound, FeatureSpec};
use churnguard::time::{parse_ts, Ts};
use proptest::prelude::*;
use std::path::Path;

/// Copies a CSV customer base, applying `edit` to every row of every table:
/// `edit(table, header, fields)` returns the row to write, or `None` to drop it.
/// Rewrites one row: `(table, header, fields)` -> the row to keep, or `None` to drop it.
type RowEdit<'a> = &'a dyn Fn(&str, &[&str], Vec<String>) -> Option<Vec<String>>;

fn rewrite(from: &Path, to: &Path, edit: RowEdit) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        let header_line = lines.next().unwrap();
        let header: Vec<&str> = header_line.split(',').collect();
        let mut out = String::from(header_line);
        out.push('\n');
        for line in lines {
            let fields: Vec<String> = line.split(',').map(String::from).collect();
            if let Some(f) = edit(&name, &header, fields) {
                out.push_str(&f.join(","));
                out.push('\n');
            }
        }
        std::fs::write(to.join(p.file_name().unwrap()), out).unwrap();
    }
}

fn at_or_after(v: &str, t: Ts) -> bool {
    parse_ts(v).is_some_and(|x| x >= t)
}

/// Features of every customer active at `t`, with a spec learned from the original base.
fn snapshot(dir: &Path, spec: &FeatureSpec, ids: &[String], t: Ts) -> Vec<Vec<f64>> {
    let base = load_dir(dir);
    let bound = Bound::new(spec, &base);
    ids.iter()
        .map(|id| {
            let mut row = vec![0.0; spec.len()];
            bound.compute(base.customers.index[id] as usize, t, &mut row);
            row
        })
        .collect()
}

fn check_no_leak(t: Ts, mode: u8, case: &str) {
    let original = load_dir(sample_csv());
    let def = ChurnDefinition::Explicit;
    let pop = population(&original, &def, t);
    let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
    let spec = FeatureSpec::learn(&original, &rows, &Default::default()).unwrap();
    let ids: Vec<String> = pop
        .iter()
        .map(|&c| original.customers.ids[c as usize].clone())
        .collect();
    let edited = scratch(&format!("leak-{case}"));
    rewrite(sample_csv(), &edited, &|table, header, mut f| {
        let col = |name: &str| header.iter().position(|h| *h == name);
        let time_col = match table {
            "customers" => return Some(f),
            "tickets" => col("opened_at"),
            "churn" => col("churned_at"),
            _ => col("at"),
        }?;
        if at_or_after(&f[time_col], t) {
            return match mode {
                0 => None,
                // Change the future instead of deleting it: amounts, values, types.
                _ => {
                    if let Some(a) = col("amount") {
                        f[a] = "12345".into();
                    }
                    if let Some(e) = col("event_type") {
                        f[e] = "search".into();
                    }
                    Some(f)
                }
            };
        }
        // A ticket closed at or after T: its closure is unknown at T.
        if let Some(c) = col("closed_at") {
            if at_or_after(&f[c], t) {
                f[c] = if mode == 0 {
                    String::new()
                } else {
                    "2099-01-01".into()
                };
                if let Some(s) = col("csat") {
                    f[s] = if mode == 0 { String::new() } else { "5".into() };
                }
            }
        }
        Some(f)
    });
    let a = snapshot(sample_csv(), &spec, &ids, t);
    let b = snapshot(&edited, &spec, &ids, t);
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
            assert!(
                same(*x, *y),
                "customer {} feature {} differs: {x} vs {y} (T {t})",
                ids[i],
                spec.names()[j]
            );
        }
    }
}

#[test]
fn deleting_every_row_at_or_after_t_leaves_the_features_at_t_unchanged() {
    check_no_leak(parse_ts("2024-06-15").unwrap(), 0, "delete");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, .. ProptestConfig::default() })]
    #[test]
    fn changing_the_future_at_any_snapshot_leaves_the_features_unchanged(day in 120i64..700, hour in 0i64..24) {
        let t = parse_ts("2023-01-01").unwrap() + day * 86_400 + hour * 3600;
        check_no_leak(t, 1, &format!("change-{day}-{hour}"));
    }
}
