//! Alerts that are never lost: the policy that turns scores into alerts, the durable
//! outbox (SQLite, or PostgreSQL for several hosts), the sinks (webhook, JSON lines, log) and the dispatcher that delivers.
//!
//! # How an alert travels
//!
//! ```text
//! score -> Outbox::record (policy + state + alert, ONE transaction, fsync) -> caller answers
//!                 |
//!                 v  (Notify, or the next poll)
//!          Dispatcher::run_once -> claim due deliveries -> AlertSink::deliver
//!                 -> mark delivered | retry later (capped backoff, full jitter)
//!                 | dead letter (a permanent answer, or past the give-up deadline)
//!                   -> `churnguard alerts redrive` -> pending again
//! ```
//!
//! - [`policy`]: when a score becomes an alert (tier transitions, cooldown). Pure.
//! - [`outbox`]: the SQLite file or PostgreSQL database: per-customer state, alerts,
//!   per-sink deliveries, and each nightly run (scored or refused).
//! - [`sink`]: where alerts go (signed webhook, JSON lines file, log).
//! - [`dispatch`]: delivers due alerts with retries; shared counters for `/metrics`.
//! - [`task`]: what makes an alert a task: profile, behaviour trail, owner, due date.
//!
//! Delivery is **at least once**: a crash between a sink accepting an alert and the
//! outbox recording it re-sends that alert after restart. Every alert carries a stable
//! [`Alert::idempotency_key`] (sent as the `Idempotency-Key` header) so receivers can
//! drop duplicates.

pub mod dispatch;
pub mod outbox;
pub mod policy;
pub mod sink;
pub mod task;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::features::FeatureSpec;
use crate::scoring::{ModelRef, RfmColumns, Score, Scorer, Tier, Trend30};
use crate::time::{fmt_date, fmt_ts, Ts};

pub use dispatch::{DeliveryTimings, DispatchStats, Dispatcher, RetryPolicy};
pub use outbox::{
    DeliveryRecord, DeliveryStatus, Due, Night, NightFiles, NightlyHealth, Observation, Outbox,
    OutboxCounts, OutboxDepth, RecordSummary, Redriven, Refusals, Transition,
};
pub use policy::{AlertPolicy, CustomerState, Decision};
pub use sink::{
    sign, verify_signature, AlertSink, DeliveryFuture, JsonlSink, LogSink, SinkError, WebhookSink,
};
pub use task::{Profile, Task, TaskConfig, Trail};

/// One alert for an account manager, exactly as the sinks receive it (JSON).
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct Alert {
    /// Hex SHA-256 of (model name, customer id, tier, `as_of` date): a rerun of the
    /// same night recreates the same key, so the outbox stores it once and receivers
    /// can deduplicate on it (`Idempotency-Key` header).
    pub idempotency_key: String,
    /// The customer at risk.
    pub customer_id: String,
    /// Calibrated probability of churning within the model's horizon (higher is worse).
    pub churn_probability: f64,
    /// The tier the customer entered.
    pub tier: Tier,
    /// The tier of the customer's previous score; `None` when first seen.
    pub previous_tier: Option<Tier>,
    /// Why: `[{"feature", "value", "contribution", "text"}]` as computed by scoring.
    pub reasons: Vec<serde_json::Value>,
    /// Recent behaviour for the account manager (logins, open tickets, last order...),
    /// the RFM segment and the early-warning rules that fired: see [`behaviour_summary`].
    pub summary: serde_json::Value,
    /// The model that scored.
    pub model: ModelRef,
    /// The instant the score describes (RFC 3339, UTC).
    pub as_of: String,
    /// When the alert was raised (RFC 3339, UTC, wall clock).
    pub raised_at: String,
    /// Who raised it: [`Alert::SOURCE_SERVICE`] or [`Alert::SOURCE_BATCH`].
    pub source: String,
    // --- An alert is a task (issue 14, item 7; see `alerts::task`). ---
    /// Who the customer is as of `as_of`: configured attributes, tenure, plan, revenue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The last logins, orders and tickets and 12 weekly counts before `as_of`; null in
    /// the service's alerts (it has no customer base).
    #[serde(default)]
    pub trail: Option<Trail>,
    /// The 30-day trend of the churn probability (`scoring::trend`).
    #[serde(default)]
    pub trend: Trend30,
    /// The account manager, from the configured customer attribute
    /// (`[alerts] owner_attribute`); absent when not configured or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When the task is due: `raised_at` + `[alerts] due_days` (default 3), RFC 3339.
    #[serde(default)]
    pub due_at: String,
    // Explanations (issue 14, item 5); the reasons' `text` is in `reasons`.
    /// Each dimension's contribution and health, as scored; absent on alerts stored
    /// before dimensions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<crate::scoring::DimensionScores>,
    /// The dimension pushing the risk up the most (`engagement`, `support`, `billing`,
    /// `relationship`); absent when none does (or on alerts stored before dimensions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_driver: Option<crate::features::Dimension>,
}

impl Alert {
    /// `source` of alerts raised by the HTTP service.
    pub const SOURCE_SERVICE: &'static str = "service";
    /// `source` of alerts raised by the nightly batch.
    pub const SOURCE_BATCH: &'static str = "batch";

    /// An alert with its idempotency key computed and `raised_at` set to now; `reasons`
    /// empty and `summary` `{}` until [`Alert::with_reasons`] / [`Alert::with_summary`].
    pub fn new(
        model: ModelRef,
        customer_id: impl Into<String>,
        churn_probability: f64,
        tier: Tier,
        previous_tier: Option<Tier>,
        as_of: Ts,
        source: &str,
    ) -> Alert {
        let customer_id = customer_id.into();
        let raised_at = now_secs();
        Alert {
            idempotency_key: idempotency_key(&model.name, &customer_id, tier, as_of),
            customer_id,
            churn_probability,
            tier,
            previous_tier,
            reasons: Vec::new(),
            summary: serde_json::Value::Object(Default::default()),
            model,
            as_of: fmt_ts(as_of),
            raised_at: fmt_ts(raised_at),
            source: source.to_string(),
            profile: None,
            trail: None,
            trend: Trend30::default(),
            owner: None,
            due_at: fmt_ts(raised_at + i64::from(task::DEFAULT_DUE_DAYS) * crate::time::DAY),
            dimensions: None,
            primary_driver: None,
        }
    }

    /// An alert as stored in the outbox. One stored before alerts were tasks has no
    /// `due_at`: it is due [`task::DEFAULT_DUE_DAYS`] after it was raised, as a new one.
    pub fn from_stored(payload: &str) -> serde_json::Result<Alert> {
        let mut alert: Alert = serde_json::from_str(payload)?;
        if alert.due_at.is_empty() {
            if let Some(raised) = crate::time::parse_ts(&alert.raised_at) {
                alert.due_at =
                    fmt_ts(raised + i64::from(task::DEFAULT_DUE_DAYS) * crate::time::DAY);
            }
        }
        Ok(alert)
    }

    /// Sets the task part: profile, trail, owner, the trend, and `due_at` `due_days`
    /// after `raised_at`.
    pub fn with_task(mut self, t: Task, trend: Trend30, due_days: u32) -> Alert {
        self.profile = t.profile;
        self.trail = t.trail;
        self.owner = t.owner;
        self.trend = trend;
        if let Some(raised) = crate::time::parse_ts(&self.raised_at) {
            self.due_at = fmt_ts(raised + i64::from(due_days) * crate::time::DAY);
        }
        self
    }

    /// Sets the health by dimension and the primary driver.
    pub fn with_dimensions(
        mut self,
        dimensions: crate::scoring::DimensionScores,
        primary_driver: Option<crate::features::Dimension>,
    ) -> Alert {
        self.dimensions = Some(dimensions);
        self.primary_driver = primary_driver;
        self
    }

    /// Sets the per-feature reasons.
    pub fn with_reasons(mut self, reasons: Vec<serde_json::Value>) -> Alert {
        self.reasons = reasons;
        self
    }

    /// Sets the behaviour summary.
    pub fn with_summary(mut self, summary: serde_json::Value) -> Alert {
        self.summary = summary;
        self
    }

    /// The alert for a scored customer's transition, in one shape whoever raised it (the
    /// batch or the service): the score's reasons, and the [`behaviour_summary`] of the
    /// feature row that was scored.
    pub fn for_score(
        transition: &Transition<'_>,
        scorer: &Scorer,
        score: &Score,
        row: &[f64],
        source: &str,
    ) -> Alert {
        transition
            .alert(scorer.model_ref(), score.churn_probability, source)
            .with_reasons(score.reasons.iter().map(|r| json!(r)).collect())
            .with_dimensions(score.dimensions, score.primary_driver)
            .with_summary(behaviour_summary(
                &scorer.artifact.spec,
                row,
                &score.early_warnings,
            ))
    }
}

/// Features an account manager reads first, in an alert's summary when the model has them.
const SUMMARY_FEATURES: [&str; 10] = [
    "logins_30d",
    "days_since_last_login",
    "login_trend",
    "tickets_open",
    "tickets_open_urgent",
    "csat_mean_90d",
    "order_recency_days",
    "overdue_ratio",
    "revenue_365d",
    "tenure_days",
];

/// What an account manager needs next to an alert: recent behaviour from the feature row
/// (`null` where undefined), the RFM segment when the model has RFM features, and the
/// early-warning rules that fired, as full hits (rule, feature, value, threshold, message).
pub fn behaviour_summary(
    spec: &FeatureSpec,
    row: &[f64],
    early_warnings: &[crate::scoring::RuleHit],
) -> Value {
    let mut m = serde_json::Map::new();
    for name in SUMMARY_FEATURES {
        if let Some(j) = spec.index_of(name) {
            let v = row[j];
            m.insert(
                name.into(),
                if v.is_finite() { json!(v) } else { Value::Null },
            );
        }
    }
    if let Some(s) = RfmColumns::of(spec).segment(row) {
        m.insert("rfm_segment".into(), json!(s));
    }
    m.insert("early_warnings".into(), json!(early_warnings));
    Value::Object(m)
}

/// The stable key of an alert: hex SHA-256 of model name, customer id, tier and the UTC
/// date of `as_of`, NUL-separated so that no two tuples collide by concatenation.
pub fn idempotency_key(model_name: &str, customer_id: &str, tier: Tier, as_of: Ts) -> String {
    let mut h = Sha256::new();
    for part in [model_name, customer_id, tier.as_str(), &fmt_date(as_of)] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Process-wide alert counters, read by the service's `/metrics`. Deliveries count
/// once per alert and sink.
#[derive(Debug, Default)]
pub struct AlertCounters {
    /// Alerts newly stored in the outbox by this process (duplicates not counted).
    pub raised: AtomicU64,
    /// Deliveries a sink accepted.
    pub delivered: AtomicU64,
    /// Delivery attempts that failed and will be retried.
    pub failed: AtomicU64,
    /// Deliveries given up (a permanent error, or past the give-up deadline).
    pub dead: AtomicU64,
    /// Delivery latencies by sink, for `/metrics`.
    pub timings: DeliveryTimings,
}

/// A copy of [`AlertCounters`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`AlertCounters::raised`].
    pub raised: u64,
    /// See [`AlertCounters::delivered`].
    pub delivered: u64,
    /// See [`AlertCounters::failed`].
    pub failed: u64,
    /// See [`AlertCounters::dead`].
    pub dead: u64,
}

impl AlertCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            raised: self.raised.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
        }
    }
}

/// Wall-clock seconds since the epoch.
pub(crate) fn now_secs() -> Ts {
    chrono::Utc::now().timestamp()
}

/// Wall-clock milliseconds since the epoch (delivery scheduling).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelRef {
        ModelRef {
            name: "churn".into(),
            version: "v1".into(),
        }
    }

    #[test]
    fn the_idempotency_key_is_stable_within_a_day_and_ignores_the_model_version() {
        let night = crate::time::parse_ts("2024-03-01").unwrap();
        let a = Alert::new(
            model(),
            "c1",
            0.9,
            Tier::High,
            None,
            night,
            Alert::SOURCE_BATCH,
        );
        let mut m2 = model();
        m2.version = "v2".into();
        let b = Alert::new(
            m2,
            "c1",
            0.8,
            Tier::High,
            Some(Tier::Low),
            night + 3600,
            "service",
        );
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.idempotency_key.len(), 64);
        let next_day = idempotency_key("churn", "c1", Tier::High, night + crate::time::DAY);
        let other_tier = idempotency_key("churn", "c1", Tier::Medium, night);
        assert_ne!(a.idempotency_key, next_day);
        assert_ne!(a.idempotency_key, other_tier);
        // No collision by shifting characters between the parts.
        assert_ne!(
            idempotency_key("churn", "c1", Tier::High, night),
            idempotency_key("chur", "nc1", Tier::High, night)
        );
    }

    #[test]
    fn an_alert_serialises_with_the_documented_field_names() {
        let night = crate::time::parse_ts("2024-03-01").unwrap();
        let a = Alert::new(
            model(),
            "c1",
            0.9,
            Tier::High,
            Some(Tier::Medium),
            night,
            "batch",
        )
        .with_reasons(vec![
            serde_json::json!({"feature": "logins_30d", "value": 0.0, "contribution": 0.4}),
        ])
        .with_summary(serde_json::json!({"logins_30d": 0}));
        let v = serde_json::to_value(&a).unwrap();
        for field in [
            "idempotency_key",
            "customer_id",
            "churn_probability",
            "tier",
            "previous_tier",
            "reasons",
            "summary",
            "model",
            "as_of",
            "raised_at",
            "source",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {v}");
        }
        assert_eq!(v["tier"], "high");
        assert_eq!(v["previous_tier"], "medium");
        assert_eq!(v["as_of"], "2024-03-01T00:00:00Z");
        assert_eq!(v["model"]["name"], "churn");
        let back: Alert = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, a);
        // Stored before alerts were tasks: no due_at, due 3 days after it was raised.
        let mut old = v;
        old.as_object_mut().unwrap().remove("due_at");
        old["raised_at"] = "2024-03-02T08:30:00Z".into();
        let stored = Alert::from_stored(&old.to_string()).unwrap();
        assert_eq!(stored.due_at, "2024-03-05T08:30:00Z");
        assert_eq!(
            Alert::from_stored(&serde_json::to_string(&a).unwrap()).unwrap(),
            a
        );
    }

    #[test]
    fn a_behaviour_summary_holds_the_known_features_the_rfm_segment_and_full_rule_hits() {
        let orders = || (0..10).map(|i| (f64::from(i), f64::from(i), f64::from(i)));
        let present = crate::data::Present {
            logins: true,
            orders: true,
            ..Default::default()
        };
        let cuts = crate::features::RfmCuts::learn(&orders().collect::<Vec<_>>());
        let spec = crate::scoring::rules::tests::spec_of(present, Some(cuts));
        let mut row = vec![0.0; spec.len()];
        let at = |name: &str| spec.index_of(name).unwrap();
        row[at("logins_30d")] = 2.0;
        row[at("overdue_ratio")] = f64::NAN;
        row[at("rfm_r")] = 1.0;
        row[at("rfm_f")] = 5.0;
        row[at("days_since_last_login")] = 12.0;
        let hits = crate::scoring::evaluate(&crate::scoring::default_rules(), &spec, &row);
        assert_eq!(hits.len(), 1);
        let s = behaviour_summary(&spec, &row, &hits);
        assert_eq!(s["logins_30d"], 2.0);
        assert_eq!(s["days_since_last_login"], 12.0);
        assert_eq!(s["overdue_ratio"], Value::Null);
        assert!(s.get("tickets_open").is_none(), "no tickets table: {s}");
        assert_eq!(s["rfm_segment"], crate::features::rfm_segment(1, 5));
        assert_eq!(s["early_warnings"], json!(hits));
        assert_eq!(s["early_warnings"][0]["rule"], "no_login_7d");
        assert_eq!(
            s["early_warnings"][0]["message"],
            "no login for 12 days (rule: more than 7)"
        );
    }
}
