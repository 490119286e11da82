//! The nightly run's Prometheus series, rendered by one function for the service's
//! `/metrics` and for `score --metrics-textfile` (node_exporter's textfile collector), so
//! the two cannot say different things about the same night.
//!
//! Two sources: what the alert state records of the nightly runs ([`NightlyHealth`]:
//! refusals, the latest successful night) and the run summary beside the score file
//! ([`SummaryMetrics`], read from the summary's JSON: drift, alerts raised, duration).
//! No series is labelled with a customer id: features and model versions are bounded.

use std::collections::BTreeMap;
use std::path::Path;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::alerts::NightlyHealth;
use crate::error::RefusalReason;
use crate::{Error, Result};

/// A metric family whose samples print in the order they were pushed:
/// prometheus-client's `Family` keeps a `HashMap`, so two renders of the same values
/// (the textfile and `/metrics`) would list their label sets in different orders.
#[derive(Debug)]
pub(crate) struct OrderedFamily<L, M>(pub(crate) Vec<(L, M)>);

impl<L, M> EncodeMetric for OrderedFamily<L, M>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> std::result::Result<(), std::fmt::Error> {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The label of the nightly refusal series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The labels of the score drift series (the service's naming of a model).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    model_version: String,
}

/// The labels of the feature drift series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    model: String,
    model_version: String,
    feature: String,
}

/// What the series take from a run summary (`<scores>.summary.json`), read from its
/// JSON: the batch renders the summary it has just written through the same reader as
/// the service, so both read the same numbers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SummaryMetrics {
    /// `<name> <version>` of the model that scored the night (`churn v3`).
    pub model: String,
    /// Customers scored.
    pub customers_scored: usize,
    /// Customers the alert policy alerted on that night.
    pub alerts_raised: usize,
    /// PSI of the churn probabilities against the model's reference night (`None`:
    /// undefined, `null` in the JSON).
    pub score_psi: Option<f64>,
    /// Each feature's PSI against the reference night.
    pub feature_psi: Vec<FeaturePsiMetric>,
    /// Wall-clock seconds per stage.
    pub seconds: BTreeMap<String, f64>,
}

/// One feature's drift as the summary holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FeaturePsiMetric {
    pub feature: String,
    /// `None`: undefined (`null` in the JSON).
    pub psi: Option<f64>,
}

impl SummaryMetrics {
    /// Reads the series' numbers from a summary's JSON text.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Reads the summary file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&bytes)
            .map_err(|e| Error::Data(format!("run summary {}: {e}", path.display())))
    }

    /// (registry name, version) of `model`: `churn v3` -> (`churn`, `v3`).
    fn model_labels(&self) -> (String, String) {
        match self.model.rsplit_once(' ') {
            Some((name, version)) => (name.to_string(), version.to_string()),
            None => (self.model.clone(), String::new()),
        }
    }

    /// The run's wall-clock seconds: the sum of its stages (what `score` prints as its
    /// wall time).
    pub fn duration_seconds(&self) -> f64 {
        self.seconds.values().sum()
    }
}

/// Registers the nightly series of `health` (the alert state's record of the runs) and
/// `summary` (the run summary beside the score file), each left out when unknown.
pub fn register(
    r: &mut Registry,
    health: Option<&NightlyHealth>,
    summary: Option<&SummaryMetrics>,
) {
    if let Some(n) = health {
        register_health(r, n);
    }
    if let Some(s) = summary {
        register_summary(r, s);
    }
}

/// The nightly series alone, as Prometheus text (format 0.0.4): the textfile's content,
/// and the same lines the service's `/metrics` carries for the same inputs.
pub fn render(health: Option<&NightlyHealth>, summary: Option<&SummaryMetrics>) -> String {
    let mut r = Registry::default();
    register(&mut r, health, summary);
    let mut out = String::with_capacity(2048);
    prometheus_text::encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

/// Writes `text` to `path` for node_exporter's textfile collector: through a temporary
/// file beside it (named `.tmp-<name>.*`, which the collector ignores, as it reads only
/// `*.prom`) renamed into place, so a scrape never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// The alert state's series: an operator alerts on "no successful night for 36 hours"
/// (`time() - churnguard_nightly_last_success_timestamp_seconds`) and on refusals.
fn register_health(r: &mut Registry, n: &NightlyHealth) {
    let mut refused = OrderedFamily(Vec::new());
    let mut pending = OrderedFamily(Vec::new());
    for reason in RefusalReason::ALL.map(RefusalReason::as_str) {
        let labels = ReasonLabels {
            reason: reason.to_string(),
        };
        let ever = n.refused_by_reason.get(reason).copied().unwrap_or(0);
        let since = n.since_last_success.by_reason.get(reason).copied();
        refused.0.push((labels.clone(), ConstCounter::new(ever)));
        pending
            .0
            .push((labels, ConstGauge::new(since.unwrap_or(0) as i64)));
    }
    r.register(
        "churnguard_nightly_refused",
        "Nightly runs that refused their input (stale data, as_of outside the data, empty or collapsed population), by reason",
        refused,
    );
    r.register(
        "churnguard_nightly_refusals_since_success",
        "Refused nightly runs since the latest successful one, by reason (0 after a success)",
        pending,
    );
    if let Some(night) = &n.last_success {
        let gauges: [(&str, &str, i64); 3] = [
            (
                "churnguard_nightly_last_success_timestamp_seconds",
                "When the latest successful nightly run finished (UTC seconds)",
                night.finished_at,
            ),
            (
                "churnguard_nightly_last_success_as_of_timestamp_seconds",
                "The as_of the latest successful nightly run scored (UTC seconds)",
                night.as_of,
            ),
            (
                "churnguard_nightly_last_success_customers",
                "Customers the latest successful nightly run scored",
                night.customers as i64,
            ),
        ];
        for (name, help, v) in gauges {
            r.register(name, help, ConstGauge::new(v));
        }
    }
}

/// The run summary's series: drift (an operator alerts on `churnguard_feature_psi >=
/// 0.25`, a major shift) and what the night did. Undefined PSIs are left out.
fn register_summary(r: &mut Registry, s: &SummaryMetrics) {
    let (model, model_version) = s.model_labels();
    let mut score = OrderedFamily(Vec::new());
    if let Some(psi) = s.score_psi.filter(|p| p.is_finite()) {
        let labels = ModelLabels {
            model: model.clone(),
            model_version: model_version.clone(),
        };
        score.0.push((labels, ConstGauge::new(psi)));
    }
    r.register(
        "churnguard_score_psi",
        "PSI of the churn probabilities of the night in the run summary against the model's reference night",
        score,
    );
    let mut features = OrderedFamily(Vec::new());
    for f in &s.feature_psi {
        if let Some(psi) = f.psi.filter(|p| p.is_finite()) {
            let labels = FeatureLabels {
                model: model.clone(),
                model_version: model_version.clone(),
                feature: f.feature.clone(),
            };
            features.0.push((labels, ConstGauge::new(psi)));
        }
    }
    r.register(
        "churnguard_feature_psi",
        "PSI of each feature of the night in the run summary against the model's reference night (0.1 moderate, 0.25 major shift)",
        features,
    );
    r.register(
        "churnguard_batch_alerts_raised",
        "Customers the alert policy alerted on in the night of the run summary",
        ConstGauge::new(s.alerts_raised as i64),
    );
    r.register(
        "churnguard_batch_duration_seconds",
        "Wall-clock seconds of the night of the run summary (the sum of its stages)",
        ConstGauge::new(s.duration_seconds()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> SummaryMetrics {
        SummaryMetrics::from_json(
            br#"{"as_of": "2024-06-01", "model": "churn v3", "customers_scored": 10,
                 "alerts_raised": 2, "score_psi": 0.0123, "seconds": {"features": 1.5, "scoring": 0.25},
                 "feature_psi": [{"feature": "logins_30d", "psi": 0.30000000000000004, "level": "major shift"},
                                 {"feature": "tenure_days", "psi": null}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_summary_gives_drift_alerts_and_duration_with_exact_values() {
        let text = render(None, Some(&summary()));
        for line in [
            "churnguard_score_psi{model=\"churn\",model_version=\"v3\"} 0.0123",
            "churnguard_batch_alerts_raised 2",
            "churnguard_batch_duration_seconds 1.75",
            "# TYPE churnguard_feature_psi gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        // dtoa may print another decimal of the same double: compare the parsed value.
        let series =
            "churnguard_feature_psi{model=\"churn\",model_version=\"v3\",feature=\"logins_30d\"} ";
        let psi: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap();
        assert_eq!(psi.to_bits(), 0.30000000000000004f64.to_bits());
        // An undefined PSI is left out, not written as a number it is not.
        assert!(!text.contains("tenure_days"), "{text}");
        assert!(!text.contains("_total"), "{text}");
    }

    #[test]
    fn nothing_known_renders_nothing() {
        assert_eq!(render(None, None), "");
    }
}
