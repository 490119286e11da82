//! Prometheus metrics of the service, kept in process and rendered as text on `/metrics`.
//!
//! The series live in `prometheus-client` families, rendered in the Prometheus text
//! format 0.0.4. Values that other parts own (the outbox's alert counters, the model
//! being served) are read at render time. A request finds its series through a cache of
//! handles keyed by route template (read-locked, no allocation), then increments an
//! atomic counter and observes into its route's histogram (a lock per series).
//!
//! Label values are bounded: routes are the route *templates* (`/v1/customers/{id}/score`,
//! `unmatched` for anything else), methods a fixed set, and models carry their version.
//! No label ever holds a customer id or a raw path.
//!
//! Label names are the same in every series, so a dashboard joins them without
//! relabelling: `route`, `method`, `status` on the HTTP series; `model` (the registry
//! name) and `model_version` (`v3`) wherever a model is named.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;

use super::state::AppState;
use crate::alerts::{CountersSnapshot, DeliveryTimings, NightlyHealth, OutboxDepth};
use crate::nightly_metrics::SummaryMetrics;

/// Upper bounds of the request-duration buckets, in seconds: from 50 µs, because a
/// score is answered in well under a millisecond and buckets starting at 1 ms would put
/// almost every request in the first one, leaving a dashboard's quantiles flat.
const DURATION_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Upper bounds of the churn-probability buckets.
const SCORE_BUCKETS: [f64; 12] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The labels of every series that names a model (`churnguard_score`,
/// `churnguard_model_info`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    model_version: String,
}

/// A family of histograms that all share one set of bucket bounds.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn score_histogram() -> Histogram {
    Histogram::new(SCORE_BUCKETS)
}

/// The series one route template's requests update, resolved once: a request then
/// allocates nothing and hashes only its route.
#[derive(Debug)]
struct RouteSeries {
    duration: Histogram,
    /// (method, status, requests counter): a handful per route.
    requests: RwLock<Vec<(&'static str, u16, Counter)>>,
}

// A panic while holding one of these locks leaves a valid cache (entries are only added),
// so the poison carries no information.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The service's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    /// Requests answered, by route template, method and status.
    requests: Family<RequestLabels, Counter>,
    /// Time to answer, by route template.
    durations: Histograms<RouteLabels>,
    /// Churn probabilities scored, by model name and version.
    scores: Histograms<ModelLabels>,
    /// Handles into `requests` and `durations` by route template.
    routes: RwLock<FxHashMap<String, RouteSeries>>,
    /// Handles into `scores`: (model, version, histogram), one per version served.
    score_series: RwLock<Vec<(String, String, Histogram)>>,
    /// Reloads of the served model that failed (the previous model kept serving).
    pub model_reload_failures: AtomicU64,
    /// Reloads that replaced the served model with a new version (the first model served
    /// is a load, not a reload).
    pub model_reloads: AtomicU64,
    /// Reloads of the nightly score file that failed (the previous scores kept serving).
    pub scores_reload_failures: AtomicU64,
    /// Scores whose tier could not be recorded in the alert outbox.
    pub alert_record_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            scores: Family::new_with_constructor(score_histogram),
            routes: RwLock::default(),
            score_series: RwLock::default(),
            model_reload_failures: AtomicU64::new(0),
            model_reloads: AtomicU64::new(0),
            scores_reload_failures: AtomicU64::new(0),
            alert_record_failures: AtomicU64::new(0),
        }
    }
}

/// The method label: one of a fixed set, so a caller cannot invent label values.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        loop {
            if let Some(series) = read(&self.routes).get(route) {
                self.count_request(series, route, method, status);
                // A histogram never counts a value it cannot place (NaN would poison the sum).
                if seconds.is_finite() {
                    series.duration.observe(seconds);
                }
                return;
            }
            write(&self.routes)
                .entry(route.to_string())
                .or_insert_with(|| RouteSeries {
                    duration: self.durations.get_or_create_owned(&RouteLabels {
                        route: route.to_string(),
                    }),
                    requests: RwLock::default(),
                });
        }
    }

    fn count_request(&self, series: &RouteSeries, route: &str, method: &'static str, status: u16) {
        let known = |c: &[(&'static str, u16, Counter)]| {
            c.iter()
                .find(|(m, s, _)| *m == method && *s == status)
                .map(|(_, _, counter)| counter.inc())
                .is_some()
        };
        if known(&read(&series.requests)) {
            return;
        }
        let mut counters = write(&series.requests);
        if !known(&counters) {
            let counter = self.requests.get_or_create_owned(&RequestLabels {
                route: route.to_string(),
                method,
                status,
            });
            counter.inc();
            counters.push((method, status, counter));
        }
    }

    /// Records the churn probabilities one request scored.
    pub fn observe_scores(&self, model: &str, version: &str, probabilities: &[f64]) {
        let find = |series: &[(String, String, Histogram)]| {
            series
                .iter()
                .find(|(m, v, _)| m == model && v == version)
                .map(|(_, _, h)| h.clone())
        };
        let cached = find(&read(&self.score_series));
        let h = match cached {
            Some(h) => h,
            None => {
                let mut series = write(&self.score_series);
                find(&series).unwrap_or_else(|| {
                    let h = self.scores.get_or_create_owned(&ModelLabels {
                        model: model.to_string(),
                        model_version: version.to_string(),
                    });
                    series.push((model.to_string(), version.to_string(), h.clone()));
                    h
                })
            }
        };
        for &p in probabilities.iter().filter(|p| p.is_finite()) {
            h.observe(p);
        }
    }

    /// The Prometheus text exposition (format 0.0.4). `nightly` is what the alert state
    /// records of the nightly runs (left out when it could not be read), `summary` the
    /// run summary beside the served score file (left out when there is none); both
    /// rendered by [`crate::nightly_metrics`], as the batch's textfile is.
    pub fn render(
        &self,
        served: Option<(&str, &str)>,
        alerts: CountersSnapshot,
        nightly: Option<&NightlyHealth>,
        summary: Option<&SummaryMetrics>,
    ) -> String {
        // A registry per scrape: the families are shared handles, and the values owned
        // elsewhere are read now. (The registry adds `_total` to counters and a final
        // `.` to help texts.)
        let mut r = Registry::default();
        r.register(
            "churnguard_http_requests",
            "HTTP requests answered, by route template, method and status",
            self.requests.clone(),
        );
        r.register(
            "churnguard_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            self.durations.clone(),
        );
        r.register(
            "churnguard_score",
            "Churn probabilities scored online, by model and version",
            self.scores.clone(),
        );
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        register_counters(
            &mut r,
            &[
                (
                    "churnguard_alerts_raised",
                    "Alerts newly stored in the outbox by this process",
                    alerts.raised,
                ),
                (
                    "churnguard_alerts_delivered",
                    "Alert deliveries a sink accepted",
                    alerts.delivered,
                ),
                (
                    "churnguard_alerts_failed",
                    "Alert delivery attempts that failed and will be retried",
                    alerts.failed,
                ),
                (
                    "churnguard_alerts_dead",
                    "Alert deliveries given up (dead-lettered)",
                    alerts.dead,
                ),
                (
                    "churnguard_alert_record_failures",
                    "Scores whose tier could not be recorded in the alert outbox",
                    load(&self.alert_record_failures),
                ),
            ],
        );
        let info = Family::<ModelLabels, Gauge>::default();
        if let Some((name, version)) = served {
            info.get_or_create(&ModelLabels {
                model: name.to_string(),
                model_version: version.to_string(),
            })
            .set(1);
        }
        r.register(
            "churnguard_model_info",
            "The model version being served (always 1)",
            info,
        );
        register_counters(
            &mut r,
            &[
                (
                    "churnguard_model_reloads",
                    "Reloads that replaced the served model with a new version",
                    load(&self.model_reloads),
                ),
                (
                    "churnguard_model_reload_failures",
                    "Model reloads that failed; the previous model kept serving",
                    load(&self.model_reload_failures),
                ),
                (
                    "churnguard_scores_reload_failures",
                    "Reloads of the nightly score file or its run summary that failed; the previous ones kept serving",
                    load(&self.scores_reload_failures),
                ),
            ],
        );
        crate::nightly_metrics::register(&mut r, nightly, summary);
        let mut out = String::with_capacity(4096);
        prometheus_text::encode(&mut out, &r).expect("writing to a String cannot fail");
        out
    }
}

/// The label of the outbox depth series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The alert outbox's series, rendered on their own and appended to [`Metrics::render`]'s
/// (the text format allows it: each family is complete in one part): the depth read
/// from the outbox at this scrape (`None` when it could not be read: left out), and
/// the delivery latencies by sink.
pub fn render_outbox(depth: Option<OutboxDepth>, timings: &DeliveryTimings) -> String {
    let mut r = Registry::default();
    if let Some(depth) = depth {
        let states = crate::nightly_metrics::OrderedFamily(Vec::from(
            [
                ("pending", depth.pending),
                ("dead_lettered", depth.dead_lettered),
            ]
            .map(|(state, n)| {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                (StateLabels { state }, ConstGauge::new(n))
            }),
        ));
        r.register(
            "churnguard_outbox_alerts",
            "Alerts in the outbox by state: pending (not yet through every sink) or dead_lettered (waiting for churnguard alerts redrive)",
            states,
        );
    }
    r.register(
        "churnguard_alert_delivery_seconds",
        "Time from raising an alert to a sink accepting it, retries included, by sink",
        timings.delivered.clone(),
    );
    r.register(
        "churnguard_alert_delivery_attempt_seconds",
        "Time of one alert delivery attempt, whatever its outcome, by sink",
        timings.attempts.clone(),
    );
    let mut out = String::with_capacity(1024);
    prometheus_text::encode(&mut out, &r).expect("writing to a String cannot fail");
    out
}

/// Registers plain counters read at render time: (name without `_total`, help, value).
fn register_counters(r: &mut Registry, counters: &[(&'static str, &'static str, u64)]) {
    for &(name, help, v) in counters {
        r.register(name, help, ConstCounter::new(v));
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // A clone of the matched path shares its text: no allocation per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let res = next.run(req).await;
    state.metrics.observe_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        m.observe_scores("churn", "v1", &[0.005, 0.5, 0.95, f64::NAN]);
        let text = m.render(None, CountersSnapshot::default(), None, None);
        assert!(text.contains(
            "churnguard_score_bucket{model=\"churn\",model_version=\"v1\",le=\"0.01\"} 1"
        ));
        assert!(text.contains(
            "churnguard_score_bucket{model=\"churn\",model_version=\"v1\",le=\"0.5\"} 2"
        ));
        assert!(text.contains(
            "churnguard_score_bucket{model=\"churn\",model_version=\"v1\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("churnguard_score_count{model=\"churn\",model_version=\"v1\"} 3"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.observe_request("a\"b\\c\nd", "GET", 200, 0.01);
        let text = m.render(None, CountersSnapshot::default(), None, None);
        assert!(
            text.contains("churnguard_http_requests_total{route=\"a\\\"b\\\\c\\nd\",method=\"GET\",status=\"200\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn every_series_keeps_its_name_type_and_help() {
        let m = Metrics::default();
        m.observe_request("/v1/score", "POST", 200, 0.002);
        m.observe_request("/v1/score", "POST", 200, f64::NAN);
        m.observe_scores("churn", "v7", &[0.3]);
        m.model_reloads.fetch_add(2, Ordering::Relaxed);
        let alerts = CountersSnapshot {
            raised: 3,
            ..CountersSnapshot::default()
        };
        let text = m.render(Some(("churn", "v7")), alerts, None, None);
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headers,
            [
                "# HELP churnguard_http_requests_total HTTP requests answered, by route template, method and status.",
                "# TYPE churnguard_http_requests_total counter",
                "# HELP churnguard_http_request_duration_seconds Time to answer an HTTP request, by route template.",
                "# TYPE churnguard_http_request_duration_seconds histogram",
                "# HELP churnguard_score Churn probabilities scored online, by model and version.",
                "# TYPE churnguard_score histogram",
                "# HELP churnguard_alerts_raised_total Alerts newly stored in the outbox by this process.",
                "# TYPE churnguard_alerts_raised_total counter",
                "# HELP churnguard_alerts_delivered_total Alert deliveries a sink accepted.",
                "# TYPE churnguard_alerts_delivered_total counter",
                "# HELP churnguard_alerts_failed_total Alert delivery attempts that failed and will be retried.",
                "# TYPE churnguard_alerts_failed_total counter",
                "# HELP churnguard_alerts_dead_total Alert deliveries given up (dead-lettered).",
                "# TYPE churnguard_alerts_dead_total counter",
                "# HELP churnguard_alert_record_failures_total Scores whose tier could not be recorded in the alert outbox.",
                "# TYPE churnguard_alert_record_failures_total counter",
                "# HELP churnguard_model_info The model version being served (always 1).",
                "# TYPE churnguard_model_info gauge",
                "# HELP churnguard_model_reloads_total Reloads that replaced the served model with a new version.",
                "# TYPE churnguard_model_reloads_total counter",
                "# HELP churnguard_model_reload_failures_total Model reloads that failed; the previous model kept serving.",
                "# TYPE churnguard_model_reload_failures_total counter",
                "# HELP churnguard_scores_reload_failures_total Reloads of the nightly score file or its run summary that failed; the previous ones kept serving.",
                "# TYPE churnguard_scores_reload_failures_total counter",
            ]
        );
        for line in [
            "churnguard_http_requests_total{route=\"/v1/score\",method=\"POST\",status=\"200\"} 2",
            "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"5e-05\"} 0",
            "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"0.001\"} 0",
            "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"0.0025\"} 1",
            "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"10\"} 1",
            "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"+Inf\"} 1",
            "churnguard_http_request_duration_seconds_count{route=\"/v1/score\"} 1",
            "churnguard_alerts_raised_total 3",
            "churnguard_alerts_dead_total 0",
            "churnguard_model_info{model=\"churn\",model_version=\"v7\"} 1",
            "churnguard_model_reloads_total 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn a_family_without_series_is_left_out_until_its_first_value() {
        // As client_golang does: no served model, no request and no score yet print
        // nothing for their families; plain counters always print.
        let text = Metrics::default().render(None, CountersSnapshot::default(), None, None);
        for name in [
            "churnguard_model_info",
            "churnguard_http_requests_total",
            "churnguard_http_request_duration_seconds",
            "churnguard_score histogram",
            "churnguard_score_count",
        ] {
            assert!(!text.contains(name), "{name} in\n{text}");
        }
        assert!(
            text.contains("\nchurnguard_model_reloads_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn sub_millisecond_answers_fall_in_buckets_of_their_own() {
        let m = Metrics::default();
        for seconds in [0.00004, 0.00008, 0.0002, 0.0004, 0.0009] {
            m.observe_request("/v1/score", "POST", 200, seconds);
        }
        let text = m.render(None, CountersSnapshot::default(), None, None);
        let bucket = |le: &str| {
            let prefix =
                format!("churnguard_http_request_duration_seconds_bucket{{route=\"/v1/score\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
                .to_string()
        };
        // Cumulative counts: one answer per bucket below a millisecond.
        assert_eq!(DURATION_BUCKETS[0], 0.00005);
        let counts: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("churnguard_http_request_duration_seconds_bucket"))
            .take(5)
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(counts, ["1", "2", "3", "4", "5"], "{text}");
        assert_eq!(bucket("+Inf"), "5");
    }

    #[test]
    fn the_outbox_series_hold_the_depth_and_the_delivery_latencies_by_sink() {
        let timings = DeliveryTimings::default();
        // Nothing delivered yet: only the depth prints.
        let depth = OutboxDepth {
            pending: 3,
            dead_lettered: 1,
        };
        let text = render_outbox(Some(depth), &timings);
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            [
                "churnguard_outbox_alerts{state=\"pending\"} 3",
                "churnguard_outbox_alerts{state=\"dead_lettered\"} 1",
            ]
        );
        assert!(
            text.contains("# TYPE churnguard_outbox_alerts gauge"),
            "{text}"
        );
        timings
            .delivered
            .get_or_create(&crate::alerts::dispatch::SinkLabels {
                sink: "webhook".into(),
            })
            .observe(42.0);
        let text = render_outbox(None, &timings);
        assert!(!text.contains("churnguard_outbox_alerts"), "{text}");
        for line in [
            "# TYPE churnguard_alert_delivery_seconds histogram",
            "churnguard_alert_delivery_seconds_bucket{sink=\"webhook\",le=\"30\"} 0",
            "churnguard_alert_delivery_seconds_bucket{sink=\"webhook\",le=\"60\"} 1",
            "churnguard_alert_delivery_seconds_count{sink=\"webhook\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        assert!(text.contains("churnguard_alert_delivery_seconds_sum{sink=\"webhook\"} 42"));
        assert!(!text.contains("churnguard_alert_delivery_attempt_seconds_count"));
    }

    #[test]
    fn every_series_that_names_a_model_labels_it_model_and_model_version() {
        let m = Metrics::default();
        m.observe_request("/v1/score", "POST", 200, 0.002);
        m.observe_scores("churn", "v7", &[0.3]);
        let text = m.render(
            Some(("churn", "v7")),
            CountersSnapshot::default(),
            None,
            None,
        );
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((_, labels)) = line.split_once('{') else {
                continue;
            };
            let labels = labels.rsplit_once('}').unwrap().0;
            for pair in labels.split(',') {
                names.insert(pair.split_once('=').unwrap().0.to_string());
            }
            if line.contains("\"churn\"") {
                assert!(
                    line.contains("model=\"churn\",model_version=\"v7\""),
                    "{line}"
                );
            }
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            ["le", "method", "model", "model_version", "route", "status"]
        );
    }

    #[test]
    fn the_service_and_the_textfile_give_the_same_nightly_lines() {
        let health = NightlyHealth {
            refused_by_reason: [("stale_data".to_string(), 2)].into(),
            since_last_success: crate::alerts::Refusals::default(),
            last_success: Some(crate::alerts::Night {
                as_of: 1_717_200_000,
                finished_at: 1_717_203_600,
                model: "churn v3".into(),
                customers: 10,
                tiers: Default::default(),
                refused: false,
                reason: None,
                detail: None,
            }),
        };
        let summary = SummaryMetrics::from_json(
            br#"{"model": "churn v3", "customers_scored": 10, "alerts_raised": 2,
                 "score_psi": 0.05, "seconds": {"features": 1.0},
                 "feature_psi": [{"feature": "logins_30d", "psi": 0.125}]}"#,
        )
        .unwrap();
        let textfile = crate::nightly_metrics::render(Some(&health), Some(&summary));
        let m = Metrics::default();
        m.observe_request("/v1/score", "POST", 200, 0.002);
        let served = m.render(
            Some(("churn", "v3")),
            CountersSnapshot::default(),
            Some(&health),
            Some(&summary),
        );
        assert!(textfile.lines().count() > 20, "{textfile}");
        assert!(served.contains(&textfile), "{textfile}\nnot in\n{served}");
    }
}
