//! The nightly run's input guards: a run that would score a stale export, a date
//! outside the data or a population that is empty or collapsed since the previous
//! night is refused before anything is written or alerted, because a wrong night is
//! worse than no night: its alerts reach the CRM and cannot be taken back. The checks
//! are pure; [`super::run`] records and reports what they find.

use rayon::prelude::*;

use crate::alerts::Night;
use crate::data::{CustomerBase, Grouped, Timed};
use crate::error::RefusalReason;
use crate::time::{fmt_date, Ts, DAY};

/// How strictly a nightly run checks its input (`--max-data-age-days`,
/// `[alerts] min_population_ratio`, `--allow-stale`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputGuard {
    /// An activity table whose data ends more than this many days before `--as-of` is
    /// stale. Some days of slack, because a sparse table (tickets) can go a day or two
    /// without a row.
    pub max_data_age_days: u32,
    /// A population smaller than this share of the previous successful night's is
    /// collapsed (a partial export); 0 turns the check off.
    pub min_population_ratio: f64,
    /// Report what the guards find as warnings and score anyway.
    pub allow_stale: bool,
}

impl InputGuard {
    /// Default freshness limit, in days.
    pub const MAX_DATA_AGE_DAYS: u32 = 3;
    /// Default share of the previous night's population below which it has collapsed.
    pub const MIN_POPULATION_RATIO: f64 = 0.5;
}

impl Default for InputGuard {
    fn default() -> Self {
        InputGuard {
            max_data_age_days: Self::MAX_DATA_AGE_DAYS,
            min_population_ratio: Self::MIN_POPULATION_RATIO,
            allow_stale: false,
        }
    }
}

/// One thing a guard found wrong with the night's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: RefusalReason,
    /// In words, with the values involved.
    pub message: String,
}

/// The end of the day holding `t`: data dated `D` (a bare date sits at midnight)
/// counts as covering all of `D`, and so does a partial last day.
fn day_end(t: Ts) -> Ts {
    t.div_euclid(DAY) * DAY + DAY
}

/// Days from `from` to `to`, in words (`1 day`, `10 days`, `2.5 days`).
fn days(from: Ts, to: Ts) -> String {
    let d = ((to - from) as f64 / DAY as f64 * 10.0).round() / 10.0;
    if d == 1.0 {
        "1 day".into()
    } else {
        format!("{d} days")
    }
}

fn newest<T: Timed + Copy + Send + Sync>(g: &Grouped<T>) -> Option<Ts> {
    g.all().par_iter().map(|r| r.time()).max()
}

/// The newest row of each activity table present (`None`: the table has no rows). The
/// `churn` table is not activity: its rows are rare by nature.
pub fn newest_rows(base: &CustomerBase) -> Vec<(&'static str, Option<Ts>)> {
    let mut out = Vec::new();
    if let Some(g) = &base.logins {
        out.push(("logins", newest(g)));
    }
    if let Some(g) = &base.tickets {
        out.push(("tickets", newest(g)));
    }
    if let Some(g) = &base.orders {
        out.push(("orders", newest(g)));
    }
    if let Some(g) = &base.events {
        out.push(("events", newest(g)));
    }
    out
}

/// What the data guards read of a customer base: where its data ends, its first
/// signup, and each activity table's newest row. Extents of disjoint parts of a base
/// (a Spark job's buckets) [`merge`](DataExtent::merge) into the whole base's, so a
/// distributed run is guarded as `churnguard score` guards the base.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataExtent {
    /// [`CustomerBase::data_end`].
    pub data_end: Option<Ts>,
    /// The earliest signup.
    pub first_signup: Option<Ts>,
    /// [`newest_rows`]: every activity table present, `None` when it has no rows.
    pub newest: Vec<(String, Option<Ts>)>,
}

impl DataExtent {
    /// The extent of `base`.
    pub fn of(base: &CustomerBase) -> DataExtent {
        DataExtent {
            data_end: base.data_end(),
            first_signup: base.customers.signup.iter().min().copied(),
            newest: newest_rows(base)
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
        }
    }

    /// The extent of two disjoint parts of one base together.
    pub fn merge(mut self, other: &DataExtent) -> DataExtent {
        self.data_end = self.data_end.max(other.data_end);
        self.first_signup = match (self.first_signup, other.first_signup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (table, newest) in &other.newest {
            match self.newest.iter_mut().find(|(t, _)| t == table) {
                Some((_, n)) => *n = (*n).max(*newest),
                None => self.newest.push((table.clone(), *newest)),
            }
        }
        // The order `newest_rows` gives, whatever order the parts came in.
        let order = ["logins", "tickets", "orders", "events"];
        self.newest
            .sort_by_key(|(t, _)| order.iter().position(|o| o == t).unwrap_or(order.len()));
        self
    }
}

/// The checks that need only the data and the date: `as_of` within the data (after
/// the first signup, not after the end of the data's last day), and every activity
/// table's data ending at most `max_data_age_days` before `as_of`.
pub fn check_data(base: &CustomerBase, as_of: Ts, guard: &InputGuard) -> Vec<Finding> {
    check_extent(&DataExtent::of(base), as_of, guard)
}

/// [`check_data`] on the extent of a base.
pub fn check_extent(extent: &DataExtent, as_of: Ts, guard: &InputGuard) -> Vec<Finding> {
    let mut found = Vec::new();
    let shown = fmt_date(as_of);
    // Past the data as a whole, the tables that end with it say nothing more.
    let mut after_data = None;
    if let Some(end) = extent.data_end {
        if as_of > day_end(end) {
            after_data = Some(day_end(end));
            found.push(Finding {
                reason: RefusalReason::AsOfAfterData,
                message: format!(
                    "--as-of {shown} is {} after the data ends (its last day is {}): every customer would look inactive for the gap",
                    days(day_end(end), as_of),
                    fmt_date(end)
                ),
            });
        }
    }
    if let Some(first) = extent.first_signup {
        if as_of <= first {
            found.push(Finding {
                reason: RefusalReason::AsOfBeforeSignups,
                message: format!(
                    "--as-of {shown} is not after the first signup ({}): there is no one to score",
                    fmt_date(first)
                ),
            });
        }
    }
    let limit = guard.max_data_age_days as i64 * DAY;
    for (table, newest) in &extent.newest {
        let message = match *newest {
            None => format!("table `{table}` has no rows"),
            Some(t) if after_data == Some(day_end(t)) => continue,
            Some(t) if as_of - day_end(t) > limit => format!(
                "table `{table}` ends on {}, {} before --as-of {shown} (limit: {}, --max-data-age-days)",
                fmt_date(t),
                days(day_end(t), as_of),
                days(0, limit)
            ),
            Some(_) => continue,
        };
        found.push(Finding {
            reason: RefusalReason::StaleTable,
            message,
        });
    }
    found
}

/// The check of the population found: not empty, and not collapsed compared with the
/// previous successful night.
pub fn check_population(
    customers: usize,
    as_of: Ts,
    previous: Option<&Night>,
    guard: &InputGuard,
) -> Vec<Finding> {
    let shown = fmt_date(as_of);
    if customers == 0 {
        return vec![Finding {
            reason: RefusalReason::EmptyPopulation,
            message: format!("no customer is active as of {shown}"),
        }];
    }
    match previous {
        Some(p) if (customers as f64) < guard.min_population_ratio * p.customers as f64 => {
            vec![Finding {
                reason: RefusalReason::CollapsedPopulation,
                message: format!(
                    "{customers} customers are active as of {shown}, fewer than {}% of the {} scored on {} ([alerts] min_population_ratio = {})",
                    guard.min_population_ratio * 100.0,
                    p.customers,
                    fmt_date(p.as_of),
                    guard.min_population_ratio
                ),
            }]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Customers, Ticket};
    use crate::time::parse_ts;
    use std::collections::BTreeMap;

    fn t(s: &str) -> Ts {
        parse_ts(s).unwrap()
    }

    /// Two customers signed up on 2024-01-01 and 2024-02-01; logins up to
    /// `logins_end`, tickets up to `tickets_end`.
    fn base(logins_end: Ts, tickets_end: Ts) -> CustomerBase {
        let signup = vec![t("2024-01-01"), t("2024-02-01")];
        let ticket = |at| Ticket {
            opened: at,
            closed: None,
            priority: crate::data::Priority::Normal,
            csat: f64::NAN,
        };
        let mut b = CustomerBase {
            customers: Customers {
                ids: vec!["a".into(), "b".into()],
                signup: signup.clone(),
                ..Customers::default()
            },
            logins: Some(Grouped::build(
                2,
                &[0, 1, 1],
                vec![t("2024-03-01"), t("2024-03-02"), logins_end],
            )),
            tickets: Some(Grouped::build(
                2,
                &[1, 0],
                vec![ticket(t("2024-02-10")), ticket(tickets_end)],
            )),
            ..CustomerBase::default()
        };
        for x in signup
            .into_iter()
            .chain([logins_end, tickets_end, t("2024-03-01")])
        {
            b.summary.widen(x);
        }
        b
    }

    fn reasons(f: &[Finding]) -> Vec<RefusalReason> {
        f.iter().map(|f| f.reason).collect()
    }

    #[test]
    fn fresh_data_within_its_dates_passes() {
        let b = base(t("2024-06-30T18:00:00Z"), t("2024-06-29"));
        let g = InputGuard::default();
        assert_eq!(check_data(&b, t("2024-07-01"), &g), vec![]);
        // A backfill of an earlier night: newer rows than the night are no problem.
        assert_eq!(check_data(&b, t("2024-04-01"), &g), vec![]);
    }

    #[test]
    fn a_table_that_stopped_arriving_is_stale_and_named() {
        let b = base(t("2024-06-30T18:00:00Z"), t("2024-06-20T09:00:00Z"));
        let f = check_data(&b, t("2024-07-01"), &InputGuard::default());
        assert_eq!(reasons(&f), [RefusalReason::StaleTable]);
        assert!(
            f[0].message.contains("table `tickets` ends on 2024-06-20"),
            "{f:?}"
        );
        assert!(f[0].message.contains("10 days before"), "{f:?}");
        // A looser limit lets it through.
        let loose = InputGuard {
            max_data_age_days: 10,
            ..InputGuard::default()
        };
        assert_eq!(check_data(&b, t("2024-07-01"), &loose), vec![]);
    }

    #[test]
    fn a_date_only_row_counts_as_its_whole_day() {
        // Tickets dated 2024-06-27 (midnight): covered until 2024-06-28 00:00, so a
        // 3-day limit holds through 2024-07-01 00:00 and not a second later.
        let b = base(t("2024-07-01T12:00:00Z"), t("2024-06-27"));
        let g = InputGuard::default();
        assert_eq!(check_data(&b, t("2024-07-01"), &g), vec![]);
        let f = check_data(&b, t("2024-07-01") + 1, &g);
        assert_eq!(reasons(&f), [RefusalReason::StaleTable]);
    }

    #[test]
    fn an_as_of_after_the_data_or_before_any_signup_is_refused() {
        let b = base(t("2024-06-30T18:00:00Z"), t("2024-06-30"));
        let g = InputGuard::default();
        // The night after the last day is the usual nightly run; a day later is not.
        assert_eq!(check_data(&b, t("2024-07-01"), &g), vec![]);
        let f = check_data(&b, t("2024-07-02"), &g);
        assert_eq!(reasons(&f), [RefusalReason::AsOfAfterData]);
        assert!(f[0].message.contains("1 day after the data ends"), "{f:?}");
        // Far in the future: after the data; the tables that end with the data are not
        // listed again, one that ended before it is.
        let f = check_data(&b, t("2030-01-01"), &g);
        assert_eq!(reasons(&f), [RefusalReason::AsOfAfterData]);
        let lagging = base(t("2024-06-30T18:00:00Z"), t("2024-06-20"));
        let f = check_data(&lagging, t("2030-01-01"), &g);
        assert_eq!(
            reasons(&f),
            [RefusalReason::AsOfAfterData, RefusalReason::StaleTable]
        );
        assert!(
            f[1].message.contains("`tickets` ends on 2024-06-20"),
            "{f:?}"
        );
        let f = check_data(&b, t("2024-01-01"), &g);
        assert_eq!(reasons(&f), [RefusalReason::AsOfBeforeSignups]);
        assert!(f[0].message.contains("first signup (2024-01-01)"), "{f:?}");
    }

    #[test]
    fn a_present_table_without_rows_is_stale() {
        let mut b = base(t("2024-06-30"), t("2024-06-30"));
        b.orders = Some(Grouped::build(2, &[], Vec::new()));
        let f = check_data(&b, t("2024-07-01"), &InputGuard::default());
        assert_eq!(reasons(&f), [RefusalReason::StaleTable]);
        assert!(f[0].message.contains("`orders` has no rows"), "{f:?}");
    }

    fn previous(customers: usize) -> Night {
        Night {
            as_of: t("2024-06-30"),
            finished_at: 0,
            model: "churn v1".into(),
            customers,
            tiers: BTreeMap::new(),
            refused: false,
            reason: None,
            detail: None,
        }
    }

    #[test]
    fn an_empty_or_collapsed_population_is_refused() {
        let g = InputGuard::default();
        let night = t("2024-07-01");
        let f = check_population(0, night, None, &g);
        assert_eq!(reasons(&f), [RefusalReason::EmptyPopulation]);
        assert_eq!(check_population(10, night, None, &g), vec![]);
        let prev = previous(1000);
        assert_eq!(check_population(500, night, Some(&prev), &g), vec![]);
        let f = check_population(499, night, Some(&prev), &g);
        assert_eq!(reasons(&f), [RefusalReason::CollapsedPopulation]);
        assert!(
            f[0].message.contains("499 customers")
                && f[0].message.contains("1000 scored on 2024-06-30"),
            "{f:?}"
        );
        let off = InputGuard {
            min_population_ratio: 0.0,
            ..g
        };
        assert_eq!(check_population(1, night, Some(&prev), &off), vec![]);
    }
}
