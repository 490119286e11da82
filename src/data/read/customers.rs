//! The `customers` table: ids (non-empty, unique), signup times and the extra columns
//! kept as attributes (numeric when every non-empty cell is a number).

use super::cells::{polars_err, require, strings, timestamps, MISSING};
use super::errors::Errs;
use super::{LoadOptions, Part};
use crate::data::{Attribute, BadRow, Customers, TableSummary};
use crate::{Error, Result};
use polars::prelude::*;

pub(super) fn read_customers(
    parts: Vec<Part>,
    opts: &LoadOptions,
) -> Result<(Customers, TableSummary, Vec<BadRow>)> {
    let mut customers = Customers::default();
    let mut summary = TableSummary {
        table: "customers".into(),
        ..TableSummary::default()
    };
    let mut examples = Vec::new();
    // (part, row) of each customer index, to name both rows of a duplicate.
    let mut origin: Vec<(usize, usize)> = Vec::new();
    let mut attr_names: Vec<String> = Vec::new();
    let mut attr_raw: Vec<Vec<AttrCell>> = Vec::new();
    for (pi, part) in parts.iter().enumerate() {
        summary.files.push(part.file.clone());
        require(part, &["customer_id", "signup_at"])?;
        let mut errs = Errs::new(part, opts);
        let ids = strings(part, "customer_id")?;
        for (i, v) in ids.iter().enumerate() {
            if v.map(str::trim).is_none_or(str::is_empty) {
                errs.add(i, "customer_id", "empty customer_id".into())?;
            }
        }
        errs.next_check();
        let signup = timestamps(part, "signup_at", &mut errs)?;
        errs.next_check();
        for (i, s) in signup.iter().enumerate() {
            if *s == MISSING && !errs.bad[i] {
                errs.add(i, "signup_at", "empty signup_at (required)".into())?;
            }
        }
        errs.next_check();
        errs.refuse_future(&signup, "signup_at")?;
        // Extra columns are attributes, kept as numbers when the column is numeric.
        let extra: Vec<String> = part
            .df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .filter(|c| c != "customer_id" && c != "signup_at")
            .collect();
        let mut cols: Vec<Vec<AttrCell>> = Vec::new();
        for name in &extra {
            cols.push(attr_cells(part, name)?);
        }
        // Where each extra column goes among the attributes, found at the part's first
        // good row (a part without one adds no attribute).
        let mut slots: Option<Vec<usize>> = None;
        for (i, id) in ids.iter().enumerate() {
            if errs.bad[i] {
                continue;
            }
            let id = id.map(str::trim).unwrap_or_default();
            let idx = customers.ids.len() as u32;
            match customers.index.entry(id.to_string()) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let (pj, row) = origin[*e.get() as usize];
                    return Err(Error::Data(format!(
                        "table `customers` ({}), row {}, column `customer_id`: duplicate customer_id `{id}` (first at row {} of {})",
                        part.file,
                        i + 1,
                        row + 1,
                        parts[pj].file
                    )));
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(idx);
                }
            }
            origin.push((pi, i));
            customers.ids.push(id.to_string());
            customers.signup.push(signup[i]);
            let slots = slots.get_or_insert_with(|| {
                extra
                    .iter()
                    .map(|name| match attr_names.iter().position(|n| n == name) {
                        Some(p) => p,
                        None => {
                            attr_names.push(name.clone());
                            attr_raw.push(vec![AttrCell::Empty; idx as usize]);
                            attr_names.len() - 1
                        }
                    })
                    .collect()
            });
            for (k, &pos) in slots.iter().enumerate() {
                attr_raw[pos].push(std::mem::replace(&mut cols[k][i], AttrCell::Empty));
            }
            // Attributes this part does not have are empty for its customers.
            for col in attr_raw.iter_mut() {
                col.resize(idx as usize + 1, AttrCell::Empty);
            }
        }
        summary.bad_rows += errs.count;
        examples.extend(errs.examples());
    }
    summary.rows = customers.len();
    customers.attributes = attr_names
        .into_iter()
        .zip(attr_raw)
        .map(|(n, cells)| (n, attribute(cells)))
        .collect();
    Ok((customers, summary, examples))
}

#[derive(Debug, Clone)]
enum AttrCell {
    Empty,
    Num(f64),
    Text(String),
}

fn attr_cells(part: &Part, col: &str) -> Result<Vec<AttrCell>> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    if s.dtype().is_primitive_numeric() {
        let f = s.cast(&DataType::Float64).map_err(polars_err(part, col))?;
        Ok(f.f64()
            .map_err(polars_err(part, col))?
            .iter()
            .map(|v| {
                v.filter(|x| x.is_finite())
                    .map_or(AttrCell::Empty, AttrCell::Num)
            })
            .collect())
    } else {
        Ok(strings(part, col)?
            .iter()
            .map(|v| match v.map(str::trim).filter(|v| !v.is_empty()) {
                None => AttrCell::Empty,
                Some(v) => AttrCell::Text(v.to_string()),
            })
            .collect())
    }
}

/// A column is numeric when every non-empty cell is a number.
fn attribute(cells: Vec<AttrCell>) -> Attribute {
    let numeric = cells.iter().all(|c| match c {
        AttrCell::Empty | AttrCell::Num(_) => true,
        AttrCell::Text(t) => t.parse::<f64>().is_ok_and(f64::is_finite),
    });
    if numeric {
        Attribute::Numeric(
            cells
                .into_iter()
                .map(|c| match c {
                    AttrCell::Empty => f64::NAN,
                    AttrCell::Num(x) => x,
                    AttrCell::Text(t) => t.parse().unwrap_or(f64::NAN),
                })
                .collect(),
        )
    } else {
        Attribute::Categorical(
            cells
                .into_iter()
                .map(|c| match c {
                    AttrCell::Empty => None,
                    AttrCell::Num(x) => Some(x.to_string()),
                    AttrCell::Text(t) => Some(t),
                })
                .collect(),
        )
    }
}
