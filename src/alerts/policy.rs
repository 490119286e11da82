//! When a score becomes an alert: tier transitions only, with a per-customer cooldown.
//!
//! All times here are the *score's* `as_of` (not the wall clock), so re-running an old
//! night decides exactly as the original run did.

use serde::{Deserialize, Serialize};

use crate::scoring::Tier;
use crate::time::{Ts, DAY};

/// What the outbox remembers about a customer between two scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerState {
    /// Tier of the most recent score: transitions are measured from it.
    pub last_tier: Tier,
    /// `as_of` of the last score that changed this state (see [`CustomerState::changes`]);
    /// a score older than this is stale and changes nothing.
    pub last_scored_at: Ts,
    /// `as_of` of the last alert raised, for the cooldown.
    pub last_alert_at: Option<Ts>,
    /// Tier of that alert: only a higher tier breaks through the cooldown.
    pub last_alert_tier: Option<Tier>,
}

impl CustomerState {
    /// Whether storing `self` over `last` changes anything a later decision reads
    /// besides the time: the tier, or the alert history. A score that only confirms the
    /// stored tier is not written, so a steady stream of scores costs no disk write;
    /// `last_scored_at` is then the `as_of` of the last score that changed the state.
    pub fn changes(&self, last: Option<&CustomerState>) -> bool {
        last.is_none_or(|l| {
            (l.last_tier, l.last_alert_at, l.last_alert_tier)
                != (self.last_tier, self.last_alert_at, self.last_alert_tier)
        })
    }
}

/// Which scores raise an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertPolicy {
    /// The lowest tier that alerts (default `high`).
    pub alert_tier: Tier,
    /// Days after an alert during which the customer does not alert again at the same
    /// or a lower tier (default 14): a customer flapping around the threshold pages
    /// its account manager once, not every night.
    pub cooldown_days: u32,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            alert_tier: Tier::High,
            cooldown_days: 14,
        }
    }
}

/// What [`AlertPolicy::decide`] concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Raise an alert; `previous` is the tier the customer came from (`None`: first seen).
    Raise {
        /// Tier of the previous score.
        previous: Option<Tier>,
    },
    /// No alert, and why (one of the `SUPPRESS_*` constants).
    Suppress(&'static str),
}

impl Decision {
    /// Whether an alert is raised.
    pub fn is_raise(&self) -> bool {
        matches!(self, Decision::Raise { .. })
    }
}

/// What recording one score does to the customer's stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Older than the stored score: nothing changes.
    Stale,
    /// It confirms the stored state (same tier, no alert): nothing is written.
    Unchanged,
    /// Store `next`; `decision` says whether an alert goes with it.
    Write {
        /// The state to store.
        next: CustomerState,
        /// The policy's decision for this score.
        decision: Decision,
    },
}

/// The score is older than the customer's last recorded score: state is left alone.
pub const SUPPRESS_STALE: &str = "stale score: older than the customer's last score";
/// The new tier is below the alert tier.
pub const SUPPRESS_BELOW_ALERT_TIER: &str = "below the alert tier";
/// The customer was already at or above the alert tier and did not rise.
pub const SUPPRESS_NO_TRANSITION: &str = "no transition: already at or above the alert tier";
/// The customer alerted at this tier or higher within the cooldown.
pub const SUPPRESS_COOLDOWN: &str = "cooldown: alerted recently at this tier or higher";

impl AlertPolicy {
    /// Decides whether a customer scored `new_tier` at `now` (the score's `as_of`) alerts,
    /// given what was recorded for them before (`None`: never scored).
    ///
    /// - a score older than the last one is stale: suppressed, state unchanged;
    /// - below the alert tier: suppressed;
    /// - first score at or above the alert tier: raise;
    /// - already at or above the alert tier and not rising: suppressed;
    /// - entering the alert tier, or rising within it: raise, unless an alert at this
    ///   tier or higher was raised less than `cooldown_days` ago.
    pub fn decide(&self, last: Option<&CustomerState>, new_tier: Tier, now: Ts) -> Decision {
        if let Some(last) = last {
            if now < last.last_scored_at {
                return Decision::Suppress(SUPPRESS_STALE);
            }
        }
        if new_tier < self.alert_tier {
            return Decision::Suppress(SUPPRESS_BELOW_ALERT_TIER);
        }
        let Some(last) = last else {
            return Decision::Raise { previous: None };
        };
        if last.last_tier >= self.alert_tier && new_tier <= last.last_tier {
            return Decision::Suppress(SUPPRESS_NO_TRANSITION);
        }
        if let (Some(at), Some(tier)) = (last.last_alert_at, last.last_alert_tier) {
            let window = i64::from(self.cooldown_days) * DAY;
            if now - at < window && new_tier <= tier {
                return Decision::Suppress(SUPPRESS_COOLDOWN);
            }
        }
        Decision::Raise {
            previous: Some(last.last_tier),
        }
    }

    /// The decision for a score of `new_tier` at `now` and what it writes: the one rule
    /// both the outbox's transaction and its read-only pre-check follow.
    pub fn step(&self, last: Option<&CustomerState>, new_tier: Tier, now: Ts) -> Step {
        let decision = self.decide(last, new_tier, now);
        match Self::next_state(last, new_tier, now, decision) {
            None => Step::Stale,
            Some(next) if !decision.is_raise() && !next.changes(last) => Step::Unchanged,
            Some(next) => Step::Write { next, decision },
        }
    }

    /// The state to store after deciding `decision` for a score of `new_tier` at `now`;
    /// `None` when nothing changes (a stale score).
    pub fn next_state(
        last: Option<&CustomerState>,
        new_tier: Tier,
        now: Ts,
        decision: Decision,
    ) -> Option<CustomerState> {
        if decision == Decision::Suppress(SUPPRESS_STALE) {
            return None;
        }
        let (last_alert_at, last_alert_tier) = match decision {
            Decision::Raise { .. } => (Some(now), Some(new_tier)),
            Decision::Suppress(_) => (
                last.and_then(|s| s.last_alert_at),
                last.and_then(|s| s.last_alert_tier),
            ),
        };
        Some(CustomerState {
            last_tier: new_tier,
            last_scored_at: now,
            last_alert_at,
            last_alert_tier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::Tier::{High, Low, Medium};

    const T0: Ts = 1_709_251_200; // 2024-03-01

    fn state(last_tier: Tier, alert: Option<(i64, Tier)>) -> CustomerState {
        CustomerState {
            last_tier,
            last_scored_at: T0,
            last_alert_at: alert.map(|(days, _)| T0 - days * DAY),
            last_alert_tier: alert.map(|(_, t)| t),
        }
    }

    fn policy(alert_tier: Tier) -> AlertPolicy {
        AlertPolicy {
            alert_tier,
            cooldown_days: 14,
        }
    }

    #[test]
    fn the_default_policy_alerts_on_high_with_a_fourteen_day_cooldown() {
        assert_eq!(AlertPolicy::default(), policy(High));
    }

    #[test]
    fn a_score_below_the_alert_tier_never_alerts() {
        let p = policy(High);
        for last in [None, Some(state(Low, None)), Some(state(High, None))] {
            assert_eq!(
                p.decide(last.as_ref(), Medium, T0 + DAY),
                Decision::Suppress(SUPPRESS_BELOW_ALERT_TIER)
            );
        }
    }

    #[test]
    fn a_customer_first_seen_at_the_alert_tier_alerts() {
        assert_eq!(
            policy(High).decide(None, High, T0),
            Decision::Raise { previous: None }
        );
    }

    #[test]
    fn entering_the_alert_tier_from_below_alerts_with_the_previous_tier() {
        let last = state(Medium, None);
        assert_eq!(
            policy(High).decide(Some(&last), High, T0 + DAY),
            Decision::Raise {
                previous: Some(Medium)
            }
        );
    }

    #[test]
    fn staying_in_the_alert_tier_does_not_alert_again() {
        let last = state(High, Some((20, High)));
        assert_eq!(
            policy(High).decide(Some(&last), High, T0 + DAY),
            Decision::Suppress(SUPPRESS_NO_TRANSITION)
        );
    }

    #[test]
    fn falling_within_the_alert_tiers_does_not_alert() {
        let last = state(High, Some((1, High)));
        assert_eq!(
            policy(Medium).decide(Some(&last), Medium, T0 + DAY),
            Decision::Suppress(SUPPRESS_NO_TRANSITION)
        );
    }

    #[test]
    fn rising_a_tier_while_in_the_alert_tiers_alerts_even_within_the_cooldown() {
        let last = state(Medium, Some((1, Medium)));
        assert_eq!(
            policy(Medium).decide(Some(&last), High, T0 + DAY),
            Decision::Raise {
                previous: Some(Medium)
            }
        );
    }

    #[test]
    fn re_entering_within_the_cooldown_is_suppressed() {
        let last = state(Medium, Some((5, High)));
        assert_eq!(
            policy(High).decide(Some(&last), High, T0 + DAY),
            Decision::Suppress(SUPPRESS_COOLDOWN)
        );
    }

    #[test]
    fn re_entering_after_the_cooldown_alerts() {
        // The last alert is 13 days before T0; the score is 1 day after: exactly 14 days.
        let last = state(Low, Some((13, High)));
        assert_eq!(
            policy(High).decide(Some(&last), High, T0 + DAY),
            Decision::Raise {
                previous: Some(Low)
            }
        );
        // One second earlier it is still within the cooldown.
        assert_eq!(
            policy(High).decide(Some(&last), High, T0 + DAY - 1),
            Decision::Suppress(SUPPRESS_COOLDOWN)
        );
    }

    #[test]
    fn re_entering_within_the_cooldown_at_a_higher_tier_than_the_last_alert_alerts() {
        let last = state(Low, Some((3, Medium)));
        assert_eq!(
            policy(Medium).decide(Some(&last), High, T0 + DAY),
            Decision::Raise {
                previous: Some(Low)
            }
        );
    }

    #[test]
    fn a_zero_day_cooldown_never_suppresses() {
        let p = AlertPolicy {
            alert_tier: High,
            cooldown_days: 0,
        };
        let last = state(Medium, Some((0, High)));
        assert!(p.decide(Some(&last), High, T0).is_raise());
    }

    #[test]
    fn a_score_older_than_the_last_one_is_stale_and_changes_no_state() {
        let last = state(Low, None);
        let d = policy(High).decide(Some(&last), High, T0 - 1);
        assert_eq!(d, Decision::Suppress(SUPPRESS_STALE));
        assert_eq!(AlertPolicy::next_state(Some(&last), High, T0 - 1, d), None);
    }

    #[test]
    fn the_next_state_remembers_the_alert_only_when_one_is_raised() {
        let last = state(Low, Some((30, High)));
        let raised = AlertPolicy::next_state(
            Some(&last),
            High,
            T0 + DAY,
            Decision::Raise {
                previous: Some(Low),
            },
        )
        .unwrap();
        assert_eq!(raised.last_alert_at, Some(T0 + DAY));
        assert_eq!(raised.last_alert_tier, Some(High));
        let quiet = AlertPolicy::next_state(
            Some(&last),
            Medium,
            T0 + DAY,
            Decision::Suppress(SUPPRESS_BELOW_ALERT_TIER),
        )
        .unwrap();
        assert_eq!(quiet.last_tier, Medium);
        assert_eq!(quiet.last_scored_at, T0 + DAY);
        assert_eq!(quiet.last_alert_at, last.last_alert_at);
        assert_eq!(quiet.last_alert_tier, Some(High));
    }
}
