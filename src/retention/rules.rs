//! Rule-based early warnings, run beside the model on the same feature row.
//!
//! Retention teams run both: a calibrated probability, and plain rules a manager can
//! read ("no login in 7 days"). A [`Rule`] names one feature of the [`FeatureSpec`] and a
//! threshold; [`evaluate`] checks every rule against a feature row exactly as the batch
//! and the service computed it, so rules never re-derive behaviour from raw rows. A rule
//! whose feature is absent from the spec (its table was not there at training time) and a
//! feature value that is undefined (NaN, e.g. no order interval yet) never fire.
//!
//! Rules are data (serde): in JSON or TOML,
//!
//! ```json
//! [{"name": "no_login_7d", "kind": "no_login_days", "days": 7},
//!  {"kind": "order_overdue_ratio", "ratio": 1.5},
//!  {"kind": "urgent_tickets_open", "count": 2}]
//! ```
//!
//! `name` is optional; without it a name is derived from the kind and threshold
//! (`order_overdue_1_5x`, `urgent_tickets_open_2`).

use crate::features::FeatureSpec;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One configurable early-warning rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Stable name shown in outputs and alerts; derived from the condition when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What fires the rule.
    #[serde(flatten)]
    pub condition: Condition,
    /// Whether a hit raises an alert on its own: the customer counts as `high` for the
    /// alert policy (transitions, cooldown) while the rule fires, whatever the model says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alert: bool,
}

/// The condition of a [`Rule`], tagged by `kind`. Each reads one feature of the row.
///
/// "No X in N days" conditions are strict (`>`): a login exactly 7 days before `T` is
/// inside the half-open window `[T - 7d, T)`, so it does not fire `no_login_days: 7`.
/// Counts are inclusive (`>=`: "2 or more urgent tickets"); "below" is strict (`<`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// No login in the last `days` days: `days_since_last_login > days` (a customer who
    /// never logged in counts from signup, so a brand-new customer does not fire).
    NoLoginDays { days: f64 },
    /// No order in the last `days` days: `order_recency_days > days`.
    NoOrderDays { days: f64 },
    /// No order for more than `ratio` times the customer's usual interval:
    /// `overdue_ratio > ratio` (undefined, so never firing, before a second order).
    OrderOverdueRatio { ratio: f64 },
    /// At least `count` high or urgent tickets open at `T`: `tickets_open_urgent >= count`.
    UrgentTicketsOpen { count: u32 },
    /// Mean csat of the last 90 days below `below`: `csat_mean_90d < below` (no rating,
    /// no firing).
    LowCsat { below: f64 },
    /// Logins dropping: `login_trend < ratio` (0.5 = the last 30 days have under half the
    /// usual logins).
    LoginDrop { ratio: f64 },
    /// Any feature of the schema above a threshold: `value > threshold`.
    FeatureAbove { feature: String, threshold: f64 },
    /// Any feature of the schema below a threshold: `value < threshold`.
    FeatureBelow { feature: String, threshold: f64 },
}

/// A rule that fired for one feature row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleHit {
    /// The rule's name (e.g. `no_login_7d`).
    pub rule: String,
    /// The condition's kind (e.g. `no_login_days`).
    pub kind: String,
    /// The feature the rule read.
    pub feature: String,
    /// The customer's value of that feature.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// A sentence for an account manager, e.g. "no login for 12 days (rule: more than 7)".
    pub message: String,
    /// Whether this rule raises alerts on its own (see [`Rule::alert`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alert: bool,
}

/// The tier the alert policy sees for a score: the model's tier, raised to `high` while
/// a rule marked `alert` fires.
pub fn alerting_tier(model_tier: crate::alerts::Tier, hits: &[RuleHit]) -> crate::alerts::Tier {
    if hits.iter().any(|h| h.alert) {
        model_tier.max(crate::alerts::Tier::High)
    } else {
        model_tier
    }
}

/// How a condition compares its feature to its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Above,
    AtLeast,
    Below,
}

/// Formats a threshold compactly: `7`, `1.5`, `0.25`.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Condition {
    /// The `kind` tag as written in configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::NoLoginDays { .. } => "no_login_days",
            Condition::NoOrderDays { .. } => "no_order_days",
            Condition::OrderOverdueRatio { .. } => "order_overdue_ratio",
            Condition::UrgentTicketsOpen { .. } => "urgent_tickets_open",
            Condition::LowCsat { .. } => "low_csat",
            Condition::LoginDrop { .. } => "login_drop",
            Condition::FeatureAbove { .. } => "feature_above",
            Condition::FeatureBelow { .. } => "feature_below",
        }
    }

    /// The feature the condition reads.
    pub fn feature(&self) -> &str {
        match self {
            Condition::NoLoginDays { .. } => "days_since_last_login",
            Condition::NoOrderDays { .. } => "order_recency_days",
            Condition::OrderOverdueRatio { .. } => "overdue_ratio",
            Condition::UrgentTicketsOpen { .. } => "tickets_open_urgent",
            Condition::LowCsat { .. } => "csat_mean_90d",
            Condition::LoginDrop { .. } => "login_trend",
            Condition::FeatureAbove { feature, .. } | Condition::FeatureBelow { feature, .. } => {
                feature
            }
        }
    }

    fn threshold(&self) -> f64 {
        match self {
            Condition::NoLoginDays { days } | Condition::NoOrderDays { days } => *days,
            Condition::OrderOverdueRatio { ratio } | Condition::LoginDrop { ratio } => *ratio,
            Condition::UrgentTicketsOpen { count } => f64::from(*count),
            Condition::LowCsat { below } => *below,
            Condition::FeatureAbove { threshold, .. }
            | Condition::FeatureBelow { threshold, .. } => *threshold,
        }
    }

    fn cmp(&self) -> Cmp {
        match self {
            Condition::NoLoginDays { .. }
            | Condition::NoOrderDays { .. }
            | Condition::OrderOverdueRatio { .. }
            | Condition::FeatureAbove { .. } => Cmp::Above,
            Condition::UrgentTicketsOpen { .. } => Cmp::AtLeast,
            Condition::LowCsat { .. }
            | Condition::LoginDrop { .. }
            | Condition::FeatureBelow { .. } => Cmp::Below,
        }
    }

    /// Whether a (finite) value fires the condition.
    fn fires(&self, value: f64) -> bool {
        let t = self.threshold();
        value.is_finite()
            && match self.cmp() {
                Cmp::Above => value > t,
                Cmp::AtLeast => value >= t,
                Cmp::Below => value < t,
            }
    }

    /// The derived rule name, e.g. `no_login_7d`, `order_overdue_1_5x`.
    fn default_name(&self) -> String {
        let slug = |x: f64| num(x).replace(['.', '-'], "_");
        match self {
            Condition::NoLoginDays { days } => format!("no_login_{}d", slug(*days)),
            Condition::NoOrderDays { days } => format!("no_order_{}d", slug(*days)),
            Condition::OrderOverdueRatio { ratio } => format!("order_overdue_{}x", slug(*ratio)),
            Condition::UrgentTicketsOpen { count } => format!("urgent_tickets_open_{count}"),
            Condition::LowCsat { below } => format!("csat_below_{}", slug(*below)),
            Condition::LoginDrop { ratio } => format!("login_trend_below_{}", slug(*ratio)),
            Condition::FeatureAbove { feature, threshold } => {
                format!("{feature}_above_{}", slug(*threshold))
            }
            Condition::FeatureBelow { feature, threshold } => {
                format!("{feature}_below_{}", slug(*threshold))
            }
        }
    }

    /// What the rule means, in words.
    pub fn describe(&self) -> String {
        let t = num(self.threshold());
        match self {
            Condition::NoLoginDays { .. } => format!("no login in the last {t} days"),
            Condition::NoOrderDays { .. } => format!("no order in the last {t} days"),
            Condition::OrderOverdueRatio { .. } => {
                format!("no order for more than {t}x the customer's usual interval")
            }
            Condition::UrgentTicketsOpen { .. } => {
                format!("{t} or more high or urgent tickets open")
            }
            Condition::LowCsat { .. } => format!("mean csat of the last 90 days below {t}"),
            Condition::LoginDrop { .. } => {
                format!("logins of the last 30 days below {t}x the usual level")
            }
            Condition::FeatureAbove { feature, .. } => format!("`{feature}` above {t}"),
            Condition::FeatureBelow { feature, .. } => format!("`{feature}` below {t}"),
        }
    }

    fn message(&self, value: f64) -> String {
        let (v, t) = (num((value * 10.0).round() / 10.0), num(self.threshold()));
        match self {
            Condition::NoLoginDays { .. } => format!("no login for {v} days (rule: more than {t})"),
            Condition::NoOrderDays { .. } => format!("no order for {v} days (rule: more than {t})"),
            Condition::OrderOverdueRatio { .. } => format!(
                "no order for {v}x the usual interval between orders (rule: more than {t}x)"
            ),
            Condition::UrgentTicketsOpen { .. } => {
                format!("{v} high or urgent tickets open (rule: {t} or more)")
            }
            Condition::LowCsat { .. } => format!("mean csat {v} over 90 days (rule: below {t})"),
            Condition::LoginDrop { .. } => {
                format!("login trend {v} of the usual level (rule: below {t})")
            }
            Condition::FeatureAbove { feature, .. } => {
                format!("{feature} = {v} (rule: above {t})")
            }
            Condition::FeatureBelow { feature, .. } => {
                format!("{feature} = {v} (rule: below {t})")
            }
        }
    }
}

impl Rule {
    /// A rule with the derived name.
    pub fn new(condition: Condition) -> Self {
        Rule {
            name: None,
            condition,
            alert: false,
        }
    }

    /// A rule with an explicit name.
    pub fn named(name: &str, condition: Condition) -> Self {
        Rule {
            name: Some(name.to_string()),
            condition,
            alert: false,
        }
    }

    /// The rule's name: the configured one, else derived from its condition.
    pub fn name(&self) -> String {
        match &self.name {
            Some(n) if !n.trim().is_empty() => n.clone(),
            _ => self.condition.default_name(),
        }
    }

    /// The feature the rule reads.
    pub fn feature(&self) -> &str {
        self.condition.feature()
    }

    /// Checks thresholds before any work starts: finite, non-negative days, a count of at
    /// least one, a feature name for the generic kinds.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("rule `{}`: {m}", self.name())));
        let t = self.condition.threshold();
        if !t.is_finite() {
            return bad("the threshold must be a finite number".into());
        }
        match &self.condition {
            Condition::NoLoginDays { days } | Condition::NoOrderDays { days } if *days < 0.0 => {
                bad(format!("days must be 0 or more, got {days}"))
            }
            Condition::OrderOverdueRatio { ratio } | Condition::LoginDrop { ratio }
                if *ratio <= 0.0 =>
            {
                bad(format!("ratio must be above 0, got {ratio}"))
            }
            Condition::UrgentTicketsOpen { count: 0 } => {
                bad("count must be at least 1 (0 would fire for everyone)".into())
            }
            Condition::FeatureAbove { feature, .. } | Condition::FeatureBelow { feature, .. }
                if feature.trim().is_empty() =>
            {
                bad("feature must name a feature of the schema".into())
            }
            _ => Ok(()),
        }
    }
}

/// The default early warnings: no login in 7 days, no order for more than 1.5x the usual
/// interval, 2 or more high or urgent tickets open.
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule::new(Condition::NoLoginDays { days: 7.0 }),
        Rule::new(Condition::OrderOverdueRatio { ratio: 1.5 }),
        Rule::new(Condition::UrgentTicketsOpen { count: 2 }),
    ]
}

/// Reads rules from JSON: a list of rules, or an object `{"rules": [...]}`; validates
/// each one and refuses two rules with the same name.
pub fn rules_from_json(text: &str) -> Result<Vec<Rule>> {
    let bad = |m: String| Error::Config(format!("rules: {m}"));
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let list = match doc {
        serde_json::Value::Object(mut o) if o.contains_key("rules") => o.remove("rules"),
        other => Some(other),
    };
    let Some(serde_json::Value::Array(items)) = list else {
        return Err(bad(
            "expected a list of rules (or {\"rules\": [...]}), each with a `kind`".into(),
        ));
    };
    // Rule by rule, so that an error names the one at fault.
    let rules = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<Rule>(item).map_err(|e| bad(format!("rule {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<Rule>>>()?;
    let mut seen = std::collections::HashSet::new();
    for r in &rules {
        r.validate()?;
        if !seen.insert(r.name()) {
            return Err(Error::Config(format!(
                "rules: two rules are named `{}`",
                r.name()
            )));
        }
    }
    Ok(rules)
}

/// The rules that can never fire against `spec` because their feature is not in it.
pub fn rules_without_feature<'a>(rules: &'a [Rule], spec: &FeatureSpec) -> Vec<&'a Rule> {
    rules
        .iter()
        .filter(|r| spec.index_of(r.feature()).is_none())
        .collect()
}

/// The rules that fire for one feature row (`row` in `spec`'s order, as the batch and the
/// service compute it), in the order of `rules`.
pub fn evaluate(rules: &[Rule], spec: &FeatureSpec, row: &[f64]) -> Vec<RuleHit> {
    rules
        .iter()
        .filter_map(|r| {
            let j = spec.index_of(r.feature())?;
            let value = *row.get(j)?;
            r.condition.fires(value).then(|| RuleHit {
                rule: r.name(),
                kind: r.condition.kind().to_string(),
                feature: r.feature().to_string(),
                value,
                threshold: r.condition.threshold(),
                message: r.condition.message(value),
                alert: r.alert,
            })
        })
        .collect()
}

/// Like [`evaluate`], but only whether each rule fires (one flag per rule), for counting.
pub(crate) fn fired(rules: &[(usize, &Condition)], row: &[f64]) -> Vec<bool> {
    rules
        .iter()
        .map(|&(j, c)| row.get(j).is_some_and(|&v| c.fires(v)))
        .collect()
}
