//! The data contract: bad input names table, row and column; formats agree.

use crate::common::{load_dir, sample_csv, sample_parquet, write_tables};
use churnguard::data::{load, LoadOptions};

const CUSTOMERS: &str = "customer_id,signup_at,plan\nc1,2024-01-01,pro\nc2,2024-01-02,basic\n";

fn err(name: &str, files: &[(&str, &str)]) -> String {
    let dir = write_tables(name, files);
    match load(&dir, &LoadOptions::default()) {
        Ok(_) => panic!("{name}: expected an error"),
        // As the binary prints it: the message and each cause.
        Err(e) => e.chain().to_string(),
    }
}

fn assert_names(msg: &str, table: &str, row: &str, column: &str) {
    assert!(msg.contains(&format!("table `{table}`")), "{msg}");
    assert!(msg.contains(row), "{msg}");
    assert!(msg.contains(&format!("column `{column}`")), "{msg}");
}

#[test]
fn a_bad_timestamp_names_table_row_and_column() {
    let m = err(
        "bad-ts",
        &[
            ("customers.csv", CUSTOMERS),
            (
                "logins.csv",
                "customer_id,at\nc1,2024-02-01\nc2,yesterday\n",
            ),
        ],
    );
    assert_names(&m, "logins", "row 2", "at");
    assert!(m.contains("yesterday"), "{m}");
}

#[test]
fn a_non_numeric_amount_names_table_row_and_column() {
    let m = err(
        "bad-amount",
        &[
            ("customers.csv", CUSTOMERS),
            (
                "orders.csv",
                "customer_id,at,amount\nc1,2024-02-01,10\nc1,2024-02-02,ten\n",
            ),
        ],
    );
    assert_names(&m, "orders", "row 2", "amount");
}

#[test]
fn an_empty_customer_id_names_table_row_and_column() {
    let m = err(
        "empty-id",
        &[
            ("customers.csv", CUSTOMERS),
            (
                "tickets.csv",
                "customer_id,opened_at\nc1,2024-02-01\n,2024-02-03\n",
            ),
        ],
    );
    assert_names(&m, "tickets", "row 2", "customer_id");
}

#[test]
fn a_duplicate_customer_is_an_error_naming_both_rows() {
    let m = err(
        "dup",
        &[(
            "customers.csv",
            "customer_id,signup_at\nc1,2024-01-01\nc2,2024-01-01\nc1,2024-02-01\n",
        )],
    );
    assert_names(&m, "customers", "row 3", "customer_id");
    assert!(
        m.contains("duplicate") && m.contains("first at row 1"),
        "{m}"
    );
}

#[test]
fn a_missing_required_column_is_named() {
    let m = err(
        "missing-col",
        &[
            ("customers.csv", CUSTOMERS),
            ("orders.csv", "customer_id,at\nc1,2024-02-01\n"),
        ],
    );
    assert!(
        m.contains("table `orders`") && m.contains("missing required column `amount`"),
        "{m}"
    );
    let m = err("no-customers", &[("orders.csv", "customer_id,at,amount\n")]);
    assert!(m.contains("no `customers` table"), "{m}");
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let m = err(
        "unreadable",
        &[
            ("customers.csv", CUSTOMERS),
            ("orders.parquet", "this is not parquet"),
        ],
    );
    assert!(m.contains("orders.parquet"), "{m}");
}

#[test]
fn skip_bad_rows_counts_and_skips_and_orphans_are_reported() {
    let dir = write_tables(
        "skip",
        &[
            ("customers.csv", CUSTOMERS),
            ("orders.csv", "customer_id,at,amount\nc1,2024-02-01,10\nc1,nope,5\nzz,2024-02-01,3\nc2,2024-03-01,x\n"),
            ("notes.txt", "ignored"),
            ("_SUCCESS", ""),
        ],
    );
    let base = load(
        &dir,
        &LoadOptions {
            skip_bad_rows: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let orders = base
        .summary
        .tables
        .iter()
        .find(|t| t.table == "orders")
        .unwrap();
    assert_eq!((orders.rows, orders.bad_rows, orders.orphans), (1, 2, 1));
    assert_eq!(base.summary.ignored_files, ["notes.txt"]);
    assert_eq!(base.summary.bad_row_examples.len(), 2);
    assert!(base.summary.missing_tables.contains(&"logins".to_string()));
}

#[test]
fn csv_and_parquet_give_identical_customer_bases() {
    let a = load_dir(sample_csv());
    let b = load_dir(sample_parquet());
    assert_eq!(a.customers.ids, b.customers.ids);
    assert_eq!(a.customers.signup, b.customers.signup);
    assert_eq!(a.customers.attributes, b.customers.attributes);
    assert_eq!(
        a.logins.as_ref().unwrap().all(),
        b.logins.as_ref().unwrap().all()
    );
    assert_eq!(
        a.orders.as_ref().unwrap().all(),
        b.orders.as_ref().unwrap().all()
    );
    let ta = a.tickets.as_ref().unwrap().all();
    let tb = b.tickets.as_ref().unwrap().all();
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(tb) {
        assert_eq!(
            (x.opened, x.closed, x.priority),
            (y.opened, y.closed, y.priority)
        );
        assert!(crate::common::same(x.csat, y.csat));
    }
    let ea: Vec<(i64, &str)> = a
        .events
        .as_ref()
        .unwrap()
        .all()
        .iter()
        .map(|e| (e.at, a.event_types[e.kind as usize].as_str()))
        .collect();
    let eb: Vec<(i64, &str)> = b
        .events
        .as_ref()
        .unwrap()
        .all()
        .iter()
        .map(|e| (e.at, b.event_types[e.kind as usize].as_str()))
        .collect();
    assert_eq!(ea, eb);
    assert_eq!(
        a.churn.as_ref().unwrap().all(),
        b.churn.as_ref().unwrap().all()
    );
    assert_eq!(a.summary.time_range, b.summary.time_range);
}

#[test]
fn a_table_may_be_a_directory_of_parquet_parts() {
    use churnguard::data::write::write_frame;
    use polars::prelude::*;
    let dir = write_tables("parts", &[("customers.csv", CUSTOMERS)]);
    std::fs::create_dir_all(dir.join("logins")).unwrap();
    for (i, day) in ["2024-02-01", "2024-02-02"].iter().enumerate() {
        let mut df = df!("customer_id" => ["c1"], "at" => [*day]).unwrap();
        write_frame(
            &mut df,
            &dir.join("logins").join(format!("part-{i}.parquet")),
        )
        .unwrap();
    }
    std::fs::write(dir.join("logins").join("_SUCCESS"), "").unwrap();
    let base = load_dir(&dir);
    assert_eq!(base.logins.as_ref().unwrap().len(), 2);
}
