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

use super::Tier;
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
pub fn alerting_tier(model_tier: Tier, hits: &[RuleHit]) -> Tier {
    if hits.iter().any(|h| h.alert) {
        model_tier.max(Tier::High)
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
    /// This rule's hit with `value` of its feature, as [`evaluate`] gives it when the
    /// rule fires; with the value unknown (a score file names the rules that fired, not
    /// their values) the message describes the rule instead.
    pub fn hit(&self, value: Option<f64>) -> RuleHit {
        RuleHit {
            rule: self.name(),
            kind: self.condition.kind().to_string(),
            feature: self.feature().to_string(),
            value: value.unwrap_or(f64::NAN),
            threshold: self.condition.threshold(),
            message: value.map_or_else(|| self.condition.describe(), |v| self.condition.message(v)),
            alert: self.alert,
        }
    }

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
            r.condition.fires(value).then(|| r.hit(Some(value)))
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

#[cfg(test)]
pub(crate) mod tests {
    //! The rules on hand-written feature rows; `retention`'s tests run them on rows
    //! computed from a hand-built customer base.

    use super::*;

    /// A schema of the tables in `present`, without attributes or event types.
    pub(crate) fn spec_of(
        present: crate::data::Present,
        rfm: Option<crate::features::RfmCuts>,
    ) -> FeatureSpec {
        FeatureSpec::new(present, Vec::new(), Vec::new(), Vec::new(), rfm)
    }

    /// A schema with logins, tickets, orders and a churn table: every default rule can fire.
    pub(crate) fn full_spec() -> FeatureSpec {
        let present = crate::data::Present {
            logins: true,
            tickets: true,
            orders: true,
            events: false,
            churn: true,
        };
        spec_of(present, None)
    }

    /// A row of `spec` with every feature 0 but the ones given.
    pub(crate) fn row_with(spec: &FeatureSpec, values: &[(&str, f64)]) -> Vec<f64> {
        let mut row = vec![0.0; spec.len()];
        for (name, v) in values {
            row[spec.index_of(name).unwrap()] = *v;
        }
        row
    }

    /// The names of the rules that fire for `row`.
    pub(crate) fn fired(rules: &[Rule], spec: &FeatureSpec, row: &[f64]) -> Vec<String> {
        evaluate(rules, spec, row)
            .into_iter()
            .map(|h| h.rule)
            .collect()
    }

    #[test]
    fn each_default_rule_fires_just_past_its_threshold_and_not_at_it() {
        let spec = full_spec();
        let rules = default_rules();
        let names: Vec<String> = rules.iter().map(Rule::name).collect();
        assert_eq!(
            names,
            ["no_login_7d", "order_overdue_1_5x", "urgent_tickets_open_2"]
        );
        let quiet = [
            ("days_since_last_login", 7.0),
            ("overdue_ratio", 1.5),
            ("tickets_open_urgent", 1.0),
        ];
        assert!(fired(&rules, &spec, &row_with(&spec, &quiet)).is_empty());
        let cases = [
            ("days_since_last_login", 7.01, "no_login_7d"),
            ("overdue_ratio", 1.51, "order_overdue_1_5x"),
            ("tickets_open_urgent", 2.0, "urgent_tickets_open_2"),
        ];
        for (feature, value, rule) in cases {
            let mut values = quiet.to_vec();
            values.retain(|(f, _)| *f != feature);
            values.push((feature, value));
            assert_eq!(
                fired(&rules, &spec, &row_with(&spec, &values)),
                [rule],
                "{feature} = {value}"
            );
        }
        let hit = &evaluate(
            &rules,
            &spec,
            &row_with(&spec, &[("days_since_last_login", 12.0)]),
        )[0];
        assert_eq!(hit.kind, "no_login_days");
        assert_eq!((hit.value, hit.threshold), (12.0, 7.0));
        assert_eq!(hit.message, "no login for 12 days (rule: more than 7)");
    }

    #[test]
    fn an_undefined_value_or_a_feature_missing_from_the_spec_never_fires() {
        let spec = full_spec();
        let rules = default_rules();
        let row = row_with(&spec, &[("overdue_ratio", f64::NAN)]);
        assert!(fired(&rules, &spec, &row).is_empty());
        // A model built without logins or tickets: only the order rule can fire.
        let present = crate::data::Present {
            orders: true,
            ..Default::default()
        };
        let orders_only = spec_of(present, None);
        let row = row_with(
            &orders_only,
            &[("overdue_ratio", 3.0), ("tenure_days", 400.0)],
        );
        assert_eq!(fired(&rules, &orders_only, &row), ["order_overdue_1_5x"]);
        let silent: Vec<String> = rules_without_feature(&rules, &orders_only)
            .into_iter()
            .map(Rule::name)
            .collect();
        assert_eq!(silent, ["no_login_7d", "urgent_tickets_open_2"]);
    }

    #[test]
    fn rules_read_from_json_take_a_derived_name_when_none_is_given() {
        let rules = rules_from_json(
            r#"[{"name": "no_login_7d", "kind": "no_login_days", "days": 7},
                {"kind": "order_overdue_ratio", "ratio": 1.5},
                {"kind": "urgent_tickets_open", "count": 2},
                {"kind": "feature_below", "feature": "csat_mean_90d", "threshold": 2.5}]"#,
        )
        .unwrap();
        let names: Vec<String> = rules.iter().map(Rule::name).collect();
        assert_eq!(
            names,
            [
                "no_login_7d",
                "order_overdue_1_5x",
                "urgent_tickets_open_2",
                "csat_mean_90d_below_2_5"
            ]
        );
        assert_eq!(rules[1..3], default_rules()[1..3]);
        let back: Vec<Rule> =
            serde_json::from_value(serde_json::to_value(&rules).unwrap()).unwrap();
        assert_eq!(back, rules);
        let object = rules_from_json(r#"{"rules": [{"kind": "low_csat", "below": 3}]}"#).unwrap();
        assert_eq!(object[0].name(), "csat_below_3");
    }

    #[test]
    fn invalid_rules_are_refused_with_the_rule_named() {
        for (text, needle) in [
            (r#"[{"kind": "urgent_tickets_open", "count": 0}]"#, "count"),
            (r#"[{"kind": "no_login_days", "days": -1}]"#, "days"),
            (
                r#"[{"kind": "feature_above", "feature": " ", "threshold": 1}]"#,
                "feature",
            ),
            (r#"[{"kind": "teleport", "days": 1}]"#, "rules:"),
            (
                r#"[{"kind": "no_login_days", "days": 7}, {"kind": "no_login_days", "days": 7}]"#,
                "two rules",
            ),
        ] {
            let err = rules_from_json(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn a_rule_marked_alert_raises_the_alerting_tier_to_high_and_only_then() {
        let rules = rules_from_json(
            r#"[{"kind": "no_login_days", "days": 7, "alert": true}, {"kind": "urgent_tickets_open", "count": 2}]"#,
        )
        .unwrap();
        assert!(rules[0].alert && !rules[1].alert);
        // Written back, only the alerting rule carries the flag.
        let text = serde_json::to_string(&rules).unwrap();
        assert_eq!(text.matches("\"alert\":true").count(), 1, "{text}");
        let hit = |alert: bool| RuleHit {
            rule: "r".into(),
            kind: "no_login_days".into(),
            feature: "days_since_last_login".into(),
            value: 9.0,
            threshold: 7.0,
            message: String::new(),
            alert,
        };
        assert_eq!(alerting_tier(Tier::Low, &[]), Tier::Low);
        assert_eq!(alerting_tier(Tier::Low, &[hit(false)]), Tier::Low);
        assert_eq!(alerting_tier(Tier::Low, &[hit(true)]), Tier::High);
        assert_eq!(alerting_tier(Tier::Medium, &[hit(true)]), Tier::High);
        assert_eq!(alerting_tier(Tier::High, &[hit(false)]), Tier::High);
    }
}
