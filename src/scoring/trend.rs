//! The 30-day trend of a customer's churn probability: the rule that turns the
//! probability of the night and the one about 30 days before into `rising`, `falling`,
//! `steady` or `unknown`. Pure; the history store finds the earlier night.
//!
//! # The rule
//!
//! `change_30d = churn_probability - probability_30d_ago`, in probability units (0.05 is
//! 5 percentage points). `rising` when `change_30d >= 0.05`, `falling` when
//! `change_30d <= -0.05`, else `steady`; `unknown` (with `probability_30d_ago` and
//! `change_30d` null) when the customer has no score on a night in the window
//! [`WINDOW_DAYS`] to [`WINDOW_DAYS`] + [`TOLERANCE_DAYS`] days before (a new customer,
//! a store with less than 30 days of history, a gap in the nightly runs).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How far back the trend looks, in days.
pub const WINDOW_DAYS: i64 = 30;
/// The earlier night is the latest one at or before `as_of - 30 days` and at most this
/// many days before that instant: nights skipped for a weekend or a refused input still
/// give a trend, a store with a month-long gap does not pretend to.
pub const TOLERANCE_DAYS: i64 = 3;
/// A change of at least this many probability units (5 points) is a trend.
pub const THRESHOLD: f64 = 0.05;

/// The direction of a customer's churn probability over [`WINDOW_DAYS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    /// Up by at least [`THRESHOLD`]: getting worse.
    Rising,
    /// Down by at least [`THRESHOLD`]: getting better.
    Falling,
    /// Within [`THRESHOLD`] either way.
    Steady,
    /// No score about 30 days before.
    #[default]
    Unknown,
}

impl Trend {
    /// The lowercase name used in JSON and the score file.
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Rising => "rising",
            Trend::Falling => "falling",
            Trend::Steady => "steady",
            Trend::Unknown => "unknown",
        }
    }

    /// Parses [`Trend::as_str`]'s names; anything else (an empty cell of an older
    /// file) is `unknown`.
    pub fn parse(s: &str) -> Trend {
        match s {
            "rising" => Trend::Rising,
            "falling" => Trend::Falling,
            "steady" => Trend::Steady,
            _ => Trend::Unknown,
        }
    }
}

/// A customer's 30-day trend, as the score file, the API and alerts carry it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct Trend30 {
    /// The churn probability on the night about 30 days before (see the rule in
    /// [`crate::scoring::trend`]); null without one.
    pub probability_30d_ago: Option<f64>,
    /// `churn_probability - probability_30d_ago`, in probability units; null without an
    /// earlier score.
    pub change_30d: Option<f64>,
    /// `rising`, `falling`, `steady` or `unknown`.
    #[serde(default)]
    pub trend: Trend,
}

impl Trend30 {
    /// The trend of `now` against `before` (the probability about 30 days earlier).
    pub fn of(now: f64, before: Option<f64>) -> Trend30 {
        let Some(before) = before.filter(|b| b.is_finite()) else {
            return Trend30::default();
        };
        let change = now - before;
        let trend = if !change.is_finite() {
            Trend::Unknown
        } else if change >= THRESHOLD {
            Trend::Rising
        } else if change <= -THRESHOLD {
            Trend::Falling
        } else {
            Trend::Steady
        };
        Trend30 {
            probability_30d_ago: Some(before),
            change_30d: Some(change),
            trend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rise_of_five_points_or_more_is_rising_and_a_fall_is_falling() {
        assert_eq!(Trend30::of(0.50, Some(0.25)).trend, Trend::Rising);
        assert_eq!(Trend30::of(0.375, Some(0.25)).trend, Trend::Rising);
        assert_eq!(Trend30::of(0.25, Some(0.5)).trend, Trend::Falling);
        assert_eq!(Trend30::of(0.125, Some(0.25)).trend, Trend::Falling);
        // Exactly representable changes of 1/16 (6.25 points) either way.
        assert_eq!(Trend30::of(0.3125, Some(0.25)).trend, Trend::Rising);
        assert_eq!(Trend30::of(0.1875, Some(0.25)).trend, Trend::Falling);
    }

    #[test]
    fn a_change_under_five_points_is_steady() {
        for (now, before) in [(0.25, 0.25), (0.28, 0.25), (0.22, 0.25), (0.0, 0.04)] {
            let t = Trend30::of(now, Some(before));
            assert_eq!(t.trend, Trend::Steady, "{now} vs {before}");
            assert_eq!(t.probability_30d_ago, Some(before));
            assert_eq!(t.change_30d, Some(now - before));
        }
    }

    #[test]
    fn without_an_earlier_score_the_trend_is_unknown_and_the_numbers_null() {
        let t = Trend30::of(0.9, None);
        assert_eq!(t, Trend30::default());
        assert_eq!(t.trend, Trend::Unknown);
        assert_eq!(Trend30::of(0.9, Some(f64::NAN)).trend, Trend::Unknown);
        let v = serde_json::to_value(t).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"probability_30d_ago": null, "change_30d": null, "trend": "unknown"})
        );
    }

    #[test]
    fn trend_names_round_trip_and_anything_else_is_unknown() {
        for t in [Trend::Rising, Trend::Falling, Trend::Steady, Trend::Unknown] {
            assert_eq!(Trend::parse(t.as_str()), t);
        }
        assert_eq!(Trend::parse(""), Trend::Unknown);
    }
}
