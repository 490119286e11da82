use super::model::add_months;
use super::*;
use crate::time::DAY;
use crate::time::{civil_from_days, days_from_civil};
use polars::prelude::*;
use std::collections::HashMap;
use std::fs::File;

const TABLE_NAMES: [&str; 6] = [
    "customers",
    "logins",
    "tickets",
    "orders",
    "events",
    "churn",
];

fn cfg(customers: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        customers,
        seed,
        ..SynthConfig::sample()
    }
}

fn read(dir: &Path, table: &str) -> DataFrame {
    let path = dir.join(format!("{table}.parquet"));
    ParquetReader::new(File::open(&path).unwrap())
        .finish()
        .unwrap()
}

fn ids(df: &DataFrame) -> Vec<usize> {
    df.column("customer_id")
        .unwrap()
        .str()
        .unwrap()
        .no_null_iter()
        .map(|s| {
            assert!(s.starts_with('c') && s.len() == 7, "{s}");
            s[1..].parse().unwrap()
        })
        .collect()
}

fn secs(df: &DataFrame, col: &str) -> Vec<Option<i64>> {
    df.column(col)
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .iter()
        .map(|v| v.map(|ms| ms.div_euclid(1000)))
        .collect()
}

fn req(v: Vec<Option<i64>>) -> Vec<i64> {
    v.into_iter().map(|x| x.expect("no nulls here")).collect()
}

/// A ticket read back: opened, closed, csat.
type Ticket = (i64, Option<i64>, Option<i32>);

/// The tables read back, per customer.
struct Base {
    signup: Vec<i64>,
    logins: Vec<Vec<i64>>,
    events: Vec<Vec<i64>>,
    orders: Vec<Vec<(i64, f64)>>,
    tickets: Vec<Vec<Ticket>>,
    churns: Vec<Vec<i64>>,
    frames: HashMap<&'static str, DataFrame>,
}

impl Base {
    fn load(dir: &Path) -> Base {
        let frames: HashMap<_, _> = TABLE_NAMES.iter().map(|&t| (t, read(dir, t))).collect();
        let c = &frames["customers"];
        let n = c.height();
        let cust = ids(c);
        assert_eq!(
            cust,
            (0..n).collect::<Vec<_>>(),
            "customer ids are c000000.. in order"
        );
        let signup: Vec<i64> = c
            .column("signup_at")
            .unwrap()
            .date()
            .unwrap()
            .physical()
            .no_null_iter()
            .map(|d| i64::from(d) * DAY)
            .collect();
        let per = |table: &str, col: &str| {
            let df = &frames[table];
            let mut out = vec![Vec::new(); n];
            for (c, t) in ids(df).into_iter().zip(req(secs(df, col))) {
                out[c].push(t);
            }
            out
        };
        let logins = per("logins", "at");
        let events = per("events", "at");
        let churns = per("churn", "churned_at");
        let o = &frames["orders"];
        let mut orders = vec![Vec::new(); n];
        let amounts: Vec<f64> = o
            .column("amount")
            .unwrap()
            .f64()
            .unwrap()
            .no_null_iter()
            .collect();
        for ((c, t), a) in ids(o).into_iter().zip(req(secs(o, "at"))).zip(amounts) {
            orders[c].push((t, a));
        }
        let t = &frames["tickets"];
        let mut tickets = vec![Vec::new(); n];
        let csat: Vec<Option<i32>> = t.column("csat").unwrap().i32().unwrap().iter().collect();
        for (((c, op), cl), cs) in ids(t)
            .into_iter()
            .zip(req(secs(t, "opened_at")))
            .zip(secs(t, "closed_at"))
            .zip(csat)
        {
            tickets[c].push((op, cl, cs));
        }
        Base {
            signup,
            logins,
            events,
            orders,
            tickets,
            churns,
            frames,
        }
    }

    /// Active stretches of customer `c`: signup to churn, then first order after the
    /// churn (a return) to the next churn, with `end` for an open stretch.
    fn intervals(&self, c: usize, end: Ts) -> Vec<(Ts, Ts)> {
        let mut out = Vec::new();
        let mut from = Some(self.signup[c]);
        for &ch in &self.churns[c] {
            if let Some(f) = from {
                out.push((f, ch));
            }
            from = self.orders[c].iter().map(|o| o.0).find(|&t| t > ch);
        }
        if let Some(f) = from {
            out.push((f, end));
        }
        out
    }
}

fn generate_into(cfg: &SynthConfig, dir: &Path) -> SynthReport {
    generate(cfg, dir, &|_| {}).unwrap()
}

#[test]
fn the_same_seed_gives_identical_tables_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let ra = generate_into(&cfg(300, 7), &a);
    let rb = generate_into(&cfg(300, 7), &b);
    generate_into(&cfg(300, 8), &c);
    assert_eq!(
        ra.tables.iter().map(|t| t.rows).collect::<Vec<_>>(),
        rb.tables.iter().map(|t| t.rows).collect::<Vec<_>>()
    );
    assert_eq!(ra.monthly_churn_rate, rb.monthly_churn_rate);
    for t in TABLE_NAMES {
        assert!(
            read(&a, t).equals_missing(&read(&b, t)),
            "{t} differs for the same seed"
        );
    }
    assert!(!read(&a, "logins").equals_missing(&read(&c, "logins")));
    assert!(!read(&a, "customers").equals_missing(&read(&c, "customers")));
}

#[test]
fn the_output_does_not_depend_on_the_number_of_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |threads: usize, name: &str| {
        let dir = tmp.path().join(name);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| generate_into(&cfg(1_100, 3), &dir));
        dir
    };
    let one = run(1, "one");
    let three = run(3, "three");
    for t in TABLE_NAMES {
        assert!(
            read(&one, t).equals_missing(&read(&three, t)),
            "{t} depends on threads"
        );
    }
}

/// Measured on 2,000 customers over the two sample years. The ranges are what a SaaS
/// business with this profile looks like; they are wide enough for sampling noise.
#[test]
fn aggregate_statistics_fall_in_the_stated_ranges() {
    check_aggregate_statistics(11);
}

fn check_aggregate_statistics(seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(2_000, seed);
    let report = generate_into(&cfg, tmp.path());
    let base = Base::load(tmp.path());
    let n = base.signup.len();

    // Monthly churn of the active base: 2-6 %, and the report agrees with the tables.
    assert!(
        (0.02..=0.06).contains(&report.monthly_churn_rate),
        "monthly churn rate {}",
        report.monthly_churn_rate
    );
    let mut months = vec![];
    let mut d = days_from_civil(2023, 1, 1);
    while d * DAY <= cfg.end {
        months.push(d * DAY);
        d = add_months(d, 1);
    }
    let mut rates = vec![];
    for w in months.windows(2) {
        let active = (0..n)
            .filter(|&c| {
                base.intervals(c, cfg.end)
                    .iter()
                    .any(|&(a, z)| a < w[0] && w[0] < z)
            })
            .count();
        let churned: usize = base
            .churns
            .iter()
            .map(|v| v.iter().filter(|&&t| t >= w[0] && t < w[1]).count())
            .sum();
        if active > 0 {
            rates.push(churned as f64 / active as f64);
        }
    }
    let from_tables = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!(
        (from_tables - report.monthly_churn_rate).abs() < 1e-9,
        "{from_tables} vs {}",
        report.monthly_churn_rate
    );

    // Activity per active customer-month.
    let customer_months: f64 = (0..n)
        .flat_map(|c| base.intervals(c, cfg.end))
        .map(|(a, z)| (z - a) as f64 / (30.44 * DAY as f64))
        .sum();
    let per_month = |rows: usize| rows as f64 / customer_months;
    let logins = per_month(base.logins.iter().map(Vec::len).sum());
    let events = per_month(base.events.iter().map(Vec::len).sum());
    let tickets = per_month(base.tickets.iter().map(Vec::len).sum());
    let orders = per_month(base.orders.iter().map(Vec::len).sum());
    assert!(
        (5.0..=14.0).contains(&logins),
        "logins per active customer-month {logins}"
    );
    assert!(
        (0.5 * logins..=1.2 * logins).contains(&events),
        "events per active customer-month {events}"
    );
    assert!(
        (0.08..=0.4).contains(&tickets),
        "tickets per active customer-month {tickets}"
    );
    assert!(
        (0.95..=1.2).contains(&orders),
        "orders per active customer-month {orders}"
    );

    // Returns are rare but present; a sizeable minority churns in two years.
    let returned = base
        .churns
        .iter()
        .zip(&base.orders)
        .filter(|(ch, o)| ch.first().is_some_and(|&c| o.iter().any(|x| x.0 > c)))
        .count();
    let churned = base.churns.iter().filter(|v| !v.is_empty()).count();
    assert!(
        (0.005..=0.035).contains(&(returned as f64 / n as f64)),
        "{returned} returned of {n}"
    );
    assert!(
        (0.2..=0.6).contains(&(churned as f64 / n as f64)),
        "{churned} churned of {n}"
    );

    // Ticket details: some open at the end, csat on some closed tickets, lower when slow.
    let all: Vec<_> = base.tickets.iter().flatten().collect();
    let open = all.iter().filter(|t| t.1.is_none()).count();
    assert!(
        open > 0 && open < all.len() / 10,
        "{open} open tickets of {}",
        all.len()
    );
    let rated: Vec<_> = all
        .iter()
        .filter_map(|t| Some(((t.1? - t.0) as f64 / 3600.0, t.2?)))
        .collect();
    let share = rated.len() as f64 / (all.len() - open) as f64;
    assert!(
        (0.4..=0.7).contains(&share),
        "csat on {share} of closed tickets"
    );
    let mean =
        |xs: &[&(f64, i32)]| xs.iter().map(|x| f64::from(x.1)).sum::<f64>() / xs.len() as f64;
    let fast: Vec<_> = rated.iter().filter(|x| x.0 < 12.0).collect();
    let slow: Vec<_> = rated.iter().filter(|x| x.0 > 72.0).collect();
    assert!(
        mean(&fast) > mean(&slow) + 0.4,
        "csat fast {} slow {}",
        mean(&fast),
        mean(&slow)
    );

    // Refunds exist but are rare; event values are null on most rows; weekends are quieter.
    let refunds = base.orders.iter().flatten().filter(|o| o.1 < 0.0).count();
    let all_orders: usize = base.orders.iter().map(Vec::len).sum();
    assert!(
        refunds > 0 && (refunds as f64) < 0.02 * all_orders as f64,
        "{refunds} refunds"
    );
    let values = &base.frames["events"].column("value").unwrap().clone();
    let null_share = values.null_count() as f64 / values.len() as f64;
    assert!(
        (0.6..0.97).contains(&null_share),
        "value null on {null_share}"
    );
    let weekday = |t: &i64| super::model::weekday(t.div_euclid(DAY));
    let weekend = base
        .logins
        .iter()
        .flatten()
        .filter(|t| weekday(t) >= 5)
        .count();
    let share = weekend as f64 / base.logins.iter().map(Vec::len).sum::<usize>() as f64;
    assert!((0.05..0.2).contains(&share), "weekend logins {share}");
}

#[test]
fn every_table_respects_the_data_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(2_000, 5);
    let report = generate_into(&cfg, tmp.path());
    let base = Base::load(tmp.path());
    for (stats, name) in report.tables.iter().zip(TABLE_NAMES) {
        assert_eq!(stats.table, name);
        assert_eq!(stats.rows, base.frames[name].height(), "{name}");
        let path = tmp.path().join(format!("{name}.parquet"));
        assert_eq!(stats.bytes, std::fs::metadata(path).unwrap().len());
        assert!(stats.rows > 0, "{name} is empty");
    }
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 6, "only the six tables: {names:?}");
    let dtype = |t: &str, c: &str| base.frames[t].column(c).unwrap().dtype().clone();
    assert_eq!(dtype("customers", "signup_at"), DataType::Date);
    assert_eq!(
        dtype("logins", "at"),
        DataType::Datetime(TimeUnit::Milliseconds, None)
    );
    assert_eq!(
        dtype("tickets", "closed_at"),
        DataType::Datetime(TimeUnit::Milliseconds, None)
    );
    assert_eq!(dtype("customers", "monthly_fee"), DataType::Float64);

    let n = base.signup.len();
    for c in 0..n {
        let s = base.signup[c];
        assert!(s >= cfg.start && s < cfg.end);
        let intervals = base.intervals(c, cfg.end);
        let active_at = |t: Ts| intervals.iter().any(|&(a, z)| t >= a && t < z);
        for &t in base.logins[c].iter().chain(&base.events[c]) {
            assert!(
                t > s && t < cfg.end,
                "c{c}: activity at {t} outside signup {s} .. end"
            );
            assert!(
                active_at(t),
                "c{c}: activity at {t} while churned ({intervals:?})"
            );
        }
        for &(t, _) in &base.orders[c] {
            assert!(
                t > s && active_at(t),
                "c{c}: order at {t} while churned ({intervals:?})"
            );
        }
        for &(op, cl, csat) in &base.tickets[c] {
            assert!(
                op > s && active_at(op),
                "c{c}: ticket opened at {op} while churned"
            );
            if let Some(cl) = cl {
                assert!(cl >= op && cl < cfg.end);
            }
            if let Some(x) = csat {
                assert!(
                    (1..=5).contains(&x) && cl.is_some(),
                    "csat {x} on ticket closed {cl:?}"
                );
            }
        }
        let ch = &base.churns[c];
        assert!(
            ch.windows(2)
                .all(|w| w[1].div_euclid(DAY) > w[0].div_euclid(DAY)),
            "one churn per date"
        );
        assert!(ch.iter().all(|&t| t > s && t < cfg.end));
        assert!(ch.len() <= 2);
        // A second churn needs a return (a new order) in between.
        if ch.len() == 2 {
            assert!(base.orders[c].iter().any(|o| o.0 > ch[0] && o.0 < ch[1]));
        }
        // Rows come grouped by customer in time order.
        assert!(base.logins[c].windows(2).all(|w| w[0] <= w[1]));
        assert!(base.orders[c].windows(2).all(|w| w[0].0 <= w[1].0));
    }
    let fees: Vec<f64> = base.frames["customers"]
        .column("monthly_fee")
        .unwrap()
        .f64()
        .unwrap()
        .no_null_iter()
        .collect();
    let amounts: Vec<f64> = base.orders.iter().flatten().map(|o| o.1).collect();
    assert!(fees.iter().all(|&f| f > 0.0));
    assert!(amounts.iter().all(|&a| a != 0.0 && a.is_finite()));
    for col in ["plan", "channel", "country"] {
        let s = base.frames["customers"]
            .column(col)
            .unwrap()
            .str()
            .unwrap()
            .clone();
        assert_eq!(s.null_count(), 0);
    }
    let types: std::collections::BTreeSet<String> = base.frames["events"]
        .column("event_type")
        .unwrap()
        .str()
        .unwrap()
        .no_null_iter()
        .map(str::to_owned)
        .collect();
    assert!((6..=10).contains(&types.len()), "{types:?}");
}

#[test]
fn csv_output_uses_the_contract_timestamp_forms() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        format: SynthFormat::Csv,
        ..cfg(300, 9)
    };
    let report = generate_into(&cfg, tmp.path());
    let header = |t: &str| -> Vec<String> {
        let text = std::fs::read_to_string(tmp.path().join(format!("{t}.csv"))).unwrap();
        let mut lines = text.lines();
        let h: Vec<String> = lines
            .next()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let rows: Vec<&str> = lines.collect();
        let stats = report.tables.iter().find(|s| s.table == t).unwrap();
        assert_eq!(rows.len(), stats.rows, "{t}");
        for row in rows {
            let cells: Vec<&str> = row.split(',').collect();
            assert_eq!(cells.len(), h.len(), "{t}: {row}");
            for (name, cell) in h.iter().zip(cells) {
                match name.as_str() {
                    "signup_at" => {
                        assert_eq!(cell.len(), 10, "{cell}");
                        assert!(crate::time::parse_ts(cell).is_some(), "{cell}");
                    }
                    "at" | "opened_at" | "churned_at" => {
                        assert_eq!(cell.len(), 19, "{cell}");
                        assert_eq!(&cell[10..11], " ");
                        assert!(crate::time::parse_ts(cell).is_some(), "{cell}");
                    }
                    "closed_at" => assert!(
                        cell.is_empty()
                            || (cell.len() == 19 && crate::time::parse_ts(cell).is_some()),
                        "{cell}"
                    ),
                    "customer_id" => assert!(cell.starts_with('c') && cell.len() == 7, "{cell}"),
                    "csat" => assert!(
                        cell.is_empty() || ["1", "2", "3", "4", "5"].contains(&cell),
                        "{cell}"
                    ),
                    "amount" | "monthly_fee" => assert!(cell.parse::<f64>().is_ok(), "{cell}"),
                    "value" => assert!(cell.is_empty() || cell.parse::<f64>().is_ok(), "{cell}"),
                    _ => assert!(!cell.is_empty(), "{t}.{name}"),
                }
            }
        }
        h
    };
    assert_eq!(
        header("customers"),
        [
            "customer_id",
            "signup_at",
            "plan",
            "channel",
            "country",
            "monthly_fee"
        ]
    );
    assert_eq!(header("logins"), ["customer_id", "at"]);
    assert_eq!(
        header("tickets"),
        ["customer_id", "opened_at", "closed_at", "priority", "csat"]
    );
    assert_eq!(header("orders"), ["customer_id", "at", "amount"]);
    assert_eq!(
        header("events"),
        ["customer_id", "at", "event_type", "value"]
    );
    assert_eq!(header("churn"), ["customer_id", "churned_at"]);
}

#[test]
fn regenerating_in_the_other_format_replaces_the_stale_tables() {
    let tmp = tempfile::tempdir().unwrap();
    generate_into(&cfg(50, 1), tmp.path());
    generate_into(
        &SynthConfig {
            format: SynthFormat::Csv,
            ..cfg(50, 1)
        },
        tmp.path(),
    );
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "churn.csv",
            "customers.csv",
            "events.csv",
            "logins.csv",
            "orders.csv",
            "tickets.csv"
        ]
    );
}

#[test]
fn a_failed_run_leaves_no_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    // Invalid window: rejected before anything is written.
    let out = tmp.path().join("empty-window");
    let bad = SynthConfig {
        end: SynthConfig::sample().start,
        ..cfg(10, 1)
    };
    assert!(matches!(
        generate(&bad, &out, &|_| {}),
        Err(Error::Config(_))
    ));
    assert!(!out.exists());
    // The output is a file: the tables cannot be moved in; the temporary directory goes.
    let out = tmp.path().join("a-file");
    std::fs::write(&out, "keep me").unwrap();
    assert!(generate(&cfg(10, 1), &out, &|_| {}).is_err());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("a-file")]);
}

#[test]
fn zero_customers_give_empty_tables_with_their_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let report = generate_into(&cfg(0, 1), tmp.path());
    assert!(report.tables.iter().all(|t| t.rows == 0));
    assert_eq!(report.monthly_churn_rate, 0.0);
    assert_eq!(read(tmp.path(), "tickets").get_column_names().len(), 5);
}

#[test]
fn progress_reports_every_customer() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = std::cell::RefCell::new(vec![]);
    generate(&cfg(40, 1), tmp.path(), &|n| seen.borrow_mut().push(n)).unwrap();
    assert_eq!(seen.into_inner().last(), Some(&40));
}

#[test]
fn calendar_arithmetic_agrees_with_chrono() {
    for day in (-800..40_000).step_by(7) {
        let date = chrono::DateTime::from_timestamp(day * DAY, 0)
            .unwrap()
            .date_naive();
        let (y, m, d) = civil_from_days(day);
        use chrono::Datelike;
        assert_eq!(
            (y, m, d),
            (i64::from(date.year()), date.month(), date.day())
        );
        assert_eq!(days_from_civil(y, m, d), day);
        let later = date.checked_add_months(chrono::Months::new(13)).unwrap();
        assert_eq!(
            add_months(day, 13) * DAY,
            later.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
        );
    }
    assert_eq!(
        add_months(days_from_civil(2024, 1, 31), 1),
        days_from_civil(2024, 2, 29)
    );
}
