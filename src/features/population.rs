//! Who is a customer at `T`: the population that is scored (batch) and labelled (trainer).

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
    /// Timestamps of this activity in a view (sorted).
    pub fn times(self, view: &CustomerView) -> Vec<Ts> {
        match self {
            ActivitySource::Orders => view.orders.iter().map(|o| o.at).collect(),
            ActivitySource::Logins => view.logins.to_vec(),
            ActivitySource::Events => view.events.iter().map(|e| e.at).collect(),
        }
    }

    fn any_in(self, view: &CustomerView, from: Ts, to: Ts) -> bool {
        match self {
            ActivitySource::Orders => !between(view.orders, from, to).is_empty(),
            ActivitySource::Logins => !between(view.logins, from, to).is_empty(),
            ActivitySource::Events => !between(view.events, from, to).is_empty(),
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

    /// A sentence for reports.
    pub fn describe(&self) -> String {
        match self {
            ChurnDefinition::Explicit => "explicit: a row in the `churn` table within the horizon; customers with an earlier churn and no order since are not in the population".into(),
            ChurnDefinition::Inactivity { source, active_days } => format!(
                "inactivity: customers with {source:?} activity in the {active_days} days before T form the population; churn = no {source:?} activity within the horizon"
            ).to_lowercase(),
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
