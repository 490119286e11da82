//! The risk tier: the one word a score is reduced to for people and for the alert policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A customer's risk tier, ordered from the least to the most at risk.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Debug, Hash, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Healthy: nothing to do.
    Low,
    /// Worth watching.
    Medium,
    /// Likely to churn within the model's horizon.
    High,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Medium, Tier::High];

    /// The lowercase name used in JSON, the API, score files and the outbox (`"high"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = crate::Error;

    /// Parses `low`, `medium` or `high`, ignoring case and surrounding spaces; any other
    /// text is refused with an error naming it and the accepted values.
    fn from_str(s: &str) -> crate::Result<Tier> {
        let t = s.trim();
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| crate::Error::Input {
                field: "tier".into(),
                message: format!("`{s}` is not a risk tier: use low, medium or high"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_ordered_from_low_to_high() {
        assert!(Tier::Low < Tier::Medium && Tier::Medium < Tier::High);
    }

    #[test]
    fn a_tier_round_trips_through_its_name_and_json() {
        for t in Tier::ALL {
            assert_eq!(t.as_str().parse::<Tier>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!(" HIGH ".parse::<Tier>().unwrap(), Tier::High);
        assert!("critical".parse::<Tier>().is_err());
    }

    #[test]
    fn an_unknown_tier_is_refused_naming_the_text_and_the_accepted_values() {
        let e = "critical".parse::<Tier>().unwrap_err().to_string();
        assert_eq!(e, "`critical` is not a risk tier: use low, medium or high");
        assert!("".parse::<Tier>().is_err());
        assert!(serde_json::from_str::<Tier>("\"critical\"").is_err());
    }
}
