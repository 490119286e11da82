//! How each early-warning rule fires now and how well it anticipated churn.

use super::ratio;
use super::risk::{Risk, Tally};
use crate::features::FeatureSpec;
use crate::scoring::rules::{self, Condition, Rule};
use serde::Serialize;

/// How an early-warning rule fires now and how well it anticipated churn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleKpi {
    pub rule: String,
    pub description: String,
    pub feature: String,
    /// False when the feature is not built for this customer base (its table is absent).
    pub usable: bool,
    /// Active customers the rule fires for at the as-of instant.
    pub firing_now: usize,
    pub share_now: Option<f64>,
    /// Customer-snapshots the rule fired for over the observed snapshots.
    pub fired: usize,
    pub churned_when_fired: usize,
    pub churn_rate_when_fired: Option<f64>,
    pub churn_rate_when_not_fired: Option<f64>,
    /// `churn_rate_when_fired / overall churn rate` of the observed snapshots.
    pub lift: Option<f64>,
}

impl Risk {
    pub(super) fn rules(&self, rules: &[Rule]) -> Vec<RuleKpi> {
        // Each rule's feature column in a snapshot's spec (absent: never fires).
        let columns = |spec: &FeatureSpec| -> Vec<(usize, &Condition)> {
            rules
                .iter()
                .map(|r| {
                    (
                        spec.index_of(r.feature()).unwrap_or(usize::MAX),
                        &r.condition,
                    )
                })
                .collect()
        };
        let mut now = vec![0usize; rules.len()];
        let cols = columns(&self.now.spec);
        for i in 0..self.now.pop.len() {
            for (k, h) in rules::fired(&cols, self.now.row(i)).into_iter().enumerate() {
                now[k] += usize::from(h);
            }
        }
        let mut hit = vec![Tally::default(); rules.len()];
        let mut miss = vec![Tally::default(); rules.len()];
        let mut all = Tally::default();
        for s in &self.snaps {
            let cols = columns(&s.spec);
            for (i, &c) in s.churned.iter().enumerate() {
                all.add(c);
                for (k, h) in rules::fired(&cols, s.row(i)).into_iter().enumerate() {
                    if h {
                        hit[k].add(c);
                    } else {
                        miss[k].add(c);
                    }
                }
            }
        }
        let base_rate = ratio(all.churned, all.n);
        let n_now = self.now.pop.len();
        rules
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let rate = ratio(hit[k].churned, hit[k].n);
                RuleKpi {
                    rule: r.name(),
                    description: r.condition.describe(),
                    feature: r.feature().to_string(),
                    usable: self.now.spec.index_of(r.feature()).is_some(),
                    firing_now: now[k],
                    share_now: ratio(now[k], n_now),
                    fired: hit[k].n,
                    churned_when_fired: hit[k].churned,
                    churn_rate_when_fired: rate,
                    churn_rate_when_not_fired: ratio(miss[k].churned, miss[k].n),
                    lift: match (rate, base_rate) {
                        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                        _ => None,
                    },
                }
            })
            .collect()
    }
}
