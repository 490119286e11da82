//! What "churned" means: the definition, who is a customer at `T`, who churned in a
//! window, and the sentences that explain it. The trainer's labels, the batch's
//! population and the retention KPIs all read the rule from here, so they cannot drift.
//!
//! Depends only on [`crate::data`] and [`crate::time`].

use crate::data::{before, between, CustomerBase, CustomerView, Present};
use crate::time::{Ts, DAY};
use serde::{Deserialize, Serialize};

/// The activity that keeps a customer "active" when churn is defined by inactivity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivitySource {
    Orders,
    Logins,
    Events,
}

impl ActivitySource {
    /// Whether a view has activity of this kind in `[from, to)`.
    fn any_in(self, view: &CustomerView, from: Ts, to: Ts) -> bool {
        match self {
            ActivitySource::Orders => !between(view.orders, from, to).is_empty(),
            ActivitySource::Logins => !between(view.logins, from, to).is_empty(),
            ActivitySource::Events => !between(view.events, from, to).is_empty(),
        }
    }

    /// The singular noun of the activity (`order`), for sentences.
    pub fn noun(self) -> &'static str {
        match self {
            ActivitySource::Orders => "order",
            ActivitySource::Logins => "login",
            ActivitySource::Events => "event",
        }
    }
}

/// What "churned" means for this customer base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChurnDefinition {
    /// The `churn` table records the end of the relationship. A customer with a churn
    /// row before `T` is gone at `T`, unless they placed an order after that churn
    /// (they came back).
    Explicit,
    /// No `churn` table: a customer is in the population at `T` when they had `source`
    /// activity in `[T - active_days, T)`, and churns when they have none in `[T, T + H)`.
    Inactivity {
        source: ActivitySource,
        active_days: u32,
    },
}

impl ChurnDefinition {
    /// The definition a customer base supports: explicit when it has a `churn` table,
    /// otherwise inactivity on orders (or logins, or events, whichever exists first).
    pub fn for_tables(present: Present, active_days: u32) -> crate::Result<Self> {
        if present.churn {
            return Ok(ChurnDefinition::Explicit);
        }
        let source = if present.orders {
            ActivitySource::Orders
        } else if present.logins {
            ActivitySource::Logins
        } else if present.events {
            ActivitySource::Events
        } else {
            return Err(crate::Error::Data(
                "no `churn` table and no orders, logins or events: churn cannot be defined".into(),
            ));
        };
        Ok(ChurnDefinition::Inactivity {
            source,
            active_days,
        })
    }

    /// A sentence for the training report and the model manifest.
    pub fn describe(&self) -> String {
        match self {
            ChurnDefinition::Explicit => "explicit: a row in the `churn` table within the horizon; customers with an earlier churn and no order since are not in the population".into(),
            ChurnDefinition::Inactivity { source, active_days } => format!(
                "inactivity: customers with {source:?} activity in the {active_days} days before T form the population; churn = no {source:?} activity within the horizon"
            ).to_lowercase(),
        }
    }

    /// The name of the definition alone, for a key-value line of a report.
    pub fn kind(&self) -> &'static str {
        match self {
            ChurnDefinition::Explicit => "explicit (`churn` table)",
            ChurnDefinition::Inactivity { .. } => "inactivity (no `churn` table)",
        }
    }

    /// The definition as the retention report states it: who is active, and how a
    /// forward-looking rate `horizon_days` after a snapshot counts a churn.
    pub fn describe_with_horizon(&self, horizon_days: u32) -> String {
        match *self {
            ChurnDefinition::Explicit => format!(
                "explicit churn: the `churn` table records each end of relationship; a customer is active from signup until a churn row (an order after the churn counts as a return). Forward-looking rates count a churn row within {horizon_days} days of the snapshot."
            ),
            ChurnDefinition::Inactivity { source, active_days } => format!(
                "inactivity (no `churn` table): a customer is active while they have {} activity in the previous {active_days} days. Forward-looking rates count a customer active at the snapshot with no {} activity within {horizon_days} days after it as churned (the model's label).",
                source.noun(),
                source.noun(),
            ),
        }
    }

    /// How [`churned_in_month`] counts a month's churn, as the retention report states it.
    pub fn monthly_rule(&self) -> String {
        match *self {
            ChurnDefinition::Explicit => {
                "customers active on the 1st of the month with a churn row during the month, divided by the customers active on the 1st".to_string()
            }
            ChurnDefinition::Inactivity { active_days, .. } => format!(
                "customers active on the 1st of the month who are no longer active on the 1st of the next (their last activity is now more than {active_days} days old), divided by the customers active on the 1st"
            ),
        }
    }
}

/// Whether a customer is active (in the population) at `t`. Uses only rows before `t`.
pub fn active_at(view: &CustomerView, def: &ChurnDefinition, t: Ts) -> bool {
    if view.signup >= t {
        return false;
    }
    match *def {
        ChurnDefinition::Explicit => match before(view.churn, t).last() {
            None => true,
            Some(&last_churn) => before(view.orders, t)
                .last()
                .is_some_and(|o| o.at > last_churn),
        },
        ChurnDefinition::Inactivity {
            source,
            active_days,
        } => source.any_in(view, t - active_days as i64 * DAY, t),
    }
}

/// Indexes of the customers active at `t`.
pub fn population(base: &CustomerBase, def: &ChurnDefinition, t: Ts) -> Vec<u32> {
    use rayon::prelude::*;
    (0..base.customers.len() as u32)
        .into_par_iter()
        .with_min_len(4096)
        .filter(|&c| active_at(&base.view(c as usize), def, t))
        .collect()
}

/// Whether a customer churned within `[from, to)`: a `churn` row in the window
/// (explicit), or no activity of the definition's source in it (inactivity). The
/// trainer's label is this rule over `[T, T + H)`; reads only rows in the window.
pub fn churned_between(view: &CustomerView, def: &ChurnDefinition, from: Ts, to: Ts) -> bool {
    match *def {
        ChurnDefinition::Explicit => !between(view.churn, from, to).is_empty(),
        ChurnDefinition::Inactivity { source, .. } => !source.any_in(view, from, to),
    }
}

/// Whether a customer active at `m0` churned during the month `[m0, m1)`: a `churn` row in
/// the month (explicit); no longer active at `m1`, i.e. their last activity fell out of the
/// active window during the month (inactivity).
pub fn churned_in_month(view: &CustomerView, def: &ChurnDefinition, m0: Ts, m1: Ts) -> bool {
    match def {
        ChurnDefinition::Explicit => churned_between(view, def, m0, m1),
        ChurnDefinition::Inactivity { .. } => !active_at(view, def, m1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Order;

    const D: Ts = DAY;

    fn view<'a>(
        signup: Ts,
        orders: &'a [Order],
        logins: &'a [Ts],
        churn: &'a [Ts],
    ) -> CustomerView<'a> {
        CustomerView {
            signup,
            logins,
            tickets: &[],
            orders,
            events: &[],
            churn,
        }
    }

    fn order(at: Ts) -> Order {
        Order { at, amount: 10.0 }
    }

    const ORDERS_90: ChurnDefinition = ChurnDefinition::Inactivity {
        source: ActivitySource::Orders,
        active_days: 90,
    };

    #[test]
    fn a_customer_is_not_active_on_or_before_the_signup_instant() {
        let v = view(10 * D, &[], &[], &[]);
        assert!(!active_at(&v, &ChurnDefinition::Explicit, 10 * D));
        assert!(active_at(&v, &ChurnDefinition::Explicit, 10 * D + 1));
    }

    #[test]
    fn an_explicit_churn_ends_activity_until_a_later_order() {
        let orders = [order(5 * D), order(30 * D)];
        let churn = [20 * D];
        let v = view(0, &orders, &[], &churn);
        let def = ChurnDefinition::Explicit;
        assert!(active_at(&v, &def, 20 * D));
        assert!(!active_at(&v, &def, 20 * D + 1));
        assert!(!active_at(&v, &def, 30 * D));
        assert!(active_at(&v, &def, 30 * D + 1));
    }

    #[test]
    fn inactivity_keeps_a_customer_active_for_the_active_window_after_the_last_activity() {
        let orders = [order(10 * D)];
        let v = view(0, &orders, &[], &[]);
        assert!(!active_at(&v, &ORDERS_90, 10 * D));
        assert!(active_at(&v, &ORDERS_90, 100 * D));
        assert!(!active_at(&v, &ORDERS_90, 100 * D + 1));
    }

    #[test]
    fn inactivity_reads_only_the_definitions_source() {
        let logins = [10 * D];
        let v = view(0, &[], &logins, &[]);
        let logins_90 = ChurnDefinition::Inactivity {
            source: ActivitySource::Logins,
            active_days: 90,
        };
        assert!(active_at(&v, &logins_90, 20 * D));
        assert!(!active_at(&v, &ORDERS_90, 20 * D));
        assert!(!churned_between(&v, &logins_90, 10 * D, 11 * D));
        assert!(churned_between(&v, &ORDERS_90, 10 * D, 11 * D));
    }

    #[test]
    fn churned_between_is_a_half_open_window() {
        let orders = [order(10 * D)];
        let churn = [10 * D];
        let v = view(0, &orders, &[], &churn);
        for def in [ChurnDefinition::Explicit, ORDERS_90] {
            let churned = |from, to| churned_between(&v, &def, from, to);
            let explicit = def == ChurnDefinition::Explicit;
            // The row at 10 is inside [10, 11) and outside [9, 10) and [11, 12).
            assert_eq!(churned(10 * D, 11 * D), explicit);
            assert_eq!(churned(9 * D, 10 * D), !explicit);
            assert_eq!(churned(11 * D, 12 * D), !explicit);
        }
    }

    #[test]
    fn a_month_of_inactivity_churn_is_leaving_the_active_window_in_it() {
        let orders = [order(10 * D)];
        let v = view(0, &orders, &[], &[]);
        // Active until day 100: churned in [90, 120), not in [60, 90).
        assert!(!churned_in_month(&v, &ORDERS_90, 60 * D, 90 * D));
        assert!(churned_in_month(&v, &ORDERS_90, 90 * D, 120 * D));
    }

    #[test]
    fn the_definition_follows_the_tables_present() {
        let mut p = Present::default();
        assert!(ChurnDefinition::for_tables(p, 90).is_err());
        p.events = true;
        assert_eq!(
            ChurnDefinition::for_tables(p, 60).unwrap(),
            ChurnDefinition::Inactivity {
                source: ActivitySource::Events,
                active_days: 60
            }
        );
        p.logins = true;
        p.orders = true;
        assert_eq!(ChurnDefinition::for_tables(p, 90).unwrap(), ORDERS_90);
        p.churn = true;
        assert_eq!(
            ChurnDefinition::for_tables(p, 90).unwrap(),
            ChurnDefinition::Explicit
        );
    }

    #[test]
    fn the_sentences_name_the_source_and_the_windows() {
        assert_eq!(
            ORDERS_90.describe(),
            "inactivity: customers with orders activity in the 90 days before t form the population; churn = no orders activity within the horizon"
        );
        assert!(ChurnDefinition::Explicit
            .describe()
            .starts_with("explicit: a row in the `churn` table"));
        let text = ORDERS_90.describe_with_horizon(30);
        assert!(
            text.contains("order activity in the previous 90 days"),
            "{text}"
        );
        assert!(text.contains("no order activity within 30 days"), "{text}");
        assert!(ChurnDefinition::Explicit
            .describe_with_horizon(45)
            .contains("within 45 days of the snapshot"));
        assert!(ORDERS_90.monthly_rule().contains("more than 90 days old"));
        assert_eq!(ORDERS_90.kind(), "inactivity (no `churn` table)");
    }
}
