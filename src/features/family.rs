//! What the feature families share: the row of a family's feature table, the customer
//! and instant a family computes for, and the one statistic two families need.

use super::explain::{Dimension, Text};
use super::spec::{FeatureDef, Transform};
use crate::data::CustomerView;
use crate::time::{Ts, DAY};

/// One feature of a family's fixed table: everything but the table, which the family
/// names once.
pub(super) struct Def {
    pub name: &'static str,
    pub transform: Transform,
    pub may_be_missing: bool,
    pub description: &'static str,
    /// See [`FeatureDef::by_construction`].
    pub by_construction: bool,
    /// See [`FeatureDef::text`].
    pub text: Text,
}

impl Def {
    pub const fn new(
        name: &'static str,
        transform: Transform,
        may_be_missing: bool,
        description: &'static str,
    ) -> Def {
        Def {
            name,
            transform,
            may_be_missing,
            description,
            by_construction: false,
            text: Text::Generic,
        }
    }

    /// The same feature, with the template of its reason text.
    pub const fn says(self, text: Text) -> Def {
        Def { text, ..self }
    }

    /// The same feature, marked as one that grows with time by construction.
    pub const fn by_construction(mut self) -> Def {
        self.by_construction = true;
        self
    }

    /// The schema entry of this feature, computed from `table`.
    pub fn to_feature(&self, table: &str) -> FeatureDef {
        FeatureDef {
            name: self.name.into(),
            description: self.description.into(),
            table: table.into(),
            transform: self.transform,
            may_be_missing: self.may_be_missing,
            by_construction: self.by_construction,
            // The spec sets the family's dimension once the family is assembled.
            dimension: Dimension::default(),
            text: self.text,
        }
    }
}

/// Appends a fixed table's features to the schema.
pub(super) fn push_all(defs: &[Def], table: &str, out: &mut Vec<FeatureDef>) {
    out.extend(defs.iter().map(|d| d.to_feature(table)));
}

/// Writes a fixed family's values at the start of `out`; returns how many.
pub(super) fn write<const N: usize>(values: [f64; N], out: &mut [f64]) -> usize {
    out[..N].copy_from_slice(&values);
    N
}

/// One customer's rows as of `t`. Every family reads only rows strictly before `t`.
pub(super) struct At<'v, 'a> {
    pub view: &'v CustomerView<'a>,
    pub t: Ts,
    /// Days since signup; every "days since the last ..." falls back to it.
    pub tenure: f64,
}

impl<'v, 'a> At<'v, 'a> {
    pub fn new(view: &'v CustomerView<'a>, t: Ts) -> Self {
        At {
            view,
            t,
            tenure: ((t - view.signup) as f64 / DAY as f64).max(0.0),
        }
    }

    /// The instant `d` days before `t`.
    pub fn days_ago(&self, d: i64) -> Ts {
        self.t - d * DAY
    }

    /// Days from `last` to `t`; the tenure when there is no `last`.
    pub fn since(&self, last: Option<Ts>) -> f64 {
        last.map_or(self.tenure, |l| (self.t - l) as f64 / DAY as f64)
    }
}

/// Mean and population standard deviation, and the count; NaN when empty.
pub(super) fn mean_std(xs: impl Iterator<Item = f64>) -> (f64, f64, usize) {
    let (mut n, mut s, mut s2) = (0usize, 0.0, 0.0);
    for x in xs {
        n += 1;
        s += x;
        s2 += x * x;
    }
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = s / n as f64;
    (m, (s2 / n as f64 - m * m).max(0.0).sqrt(), n)
}

/// Test support: a family's output checked against expected values by feature name.
#[cfg(test)]
pub(super) mod check {
    use super::{At, Def};
    use crate::data::CustomerView;
    use crate::features::FeatureDef;
    use crate::time::{parse_ts, Ts};

    /// Checks a fixed family's `compute` on `view` as of `t` by name.
    pub fn fixed<const N: usize>(
        defs: &[Def; N],
        compute: fn(&At) -> [f64; N],
        view: &CustomerView,
        t: &str,
        expected: &[(&str, f64)],
    ) {
        let values = compute(&At::new(view, ts(t)));
        by_name(defs.iter().map(|d| d.name), &values, expected);
    }

    /// Checks a family that writes its values into a slice: `compute` must write exactly
    /// one value per entry of `defs`, nothing past them, each matching its name.
    pub fn written(
        defs: &[FeatureDef],
        compute: impl FnOnce(&mut [f64]) -> usize,
        expected: &[(&str, f64)],
    ) {
        let mut out = vec![f64::INFINITY; defs.len() + 1];
        let n = compute(&mut out);
        assert_eq!(n, defs.len(), "one value per feature");
        assert_eq!(out[n], f64::INFINITY, "nothing is written past the family");
        by_name(defs.iter().map(|d| d.name.as_str()), &out[..n], expected);
    }

    /// A customer who signed up at `signup` and has no rows.
    pub fn signed_up(signup: &str) -> CustomerView<'static> {
        CustomerView {
            signup: ts(signup),
            logins: &[],
            tickets: &[],
            orders: &[],
            events: &[],
            churn: &[],
        }
    }

    /// A timestamp from text; panics on a typo in a test.
    pub fn ts(s: &str) -> Ts {
        parse_ts(s).expect("a test timestamp")
    }

    /// Asserts that `names` and `expected` list the same features in any order and that
    /// every value matches its name's (NaN matches NaN), so a value written under the
    /// wrong name fails.
    pub fn by_name<'a>(
        names: impl IntoIterator<Item = &'a str>,
        values: &[f64],
        expected: &[(&str, f64)],
    ) {
        let names: Vec<&str> = names.into_iter().collect();
        assert_eq!(names.len(), values.len(), "one value per name: {names:?}");
        let mut want: Vec<&str> = expected.iter().map(|e| e.0).collect();
        let mut have = names.clone();
        want.sort_unstable();
        have.sort_unstable();
        assert_eq!(
            have, want,
            "the family's features are exactly the expected ones"
        );
        for (name, value) in names.iter().zip(values) {
            let (_, e) = expected
                .iter()
                .find(|x| x.0 == *name)
                .expect("checked above");
            let ok = (value.is_nan() && e.is_nan()) || (value - e).abs() < 1e-9;
            assert!(ok, "{name} = {value}, expected {e}");
        }
    }
}
