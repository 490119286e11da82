//! Prometheus metrics of the service, kept in process and rendered as text on `/metrics`.
//!
//! Label values are bounded: routes are the route *templates* (`/v1/customers/{id}/score`,
//! `unmatched` for anything else), methods a fixed set, and models carry their version.
//! No label ever holds a customer id or a raw path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::state::AppState;
use crate::alerts::CountersSnapshot;

/// Upper bounds of the request-duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the churn-probability buckets.
const SCORE_BUCKETS: [f64; 12] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
];

/// A cumulative histogram with fixed bucket bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not yet cumulative).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Http {
    /// (route, method, status) -> count.
    requests: BTreeMap<(String, &'static str, u16), u64>,
    /// route -> durations.
    durations: BTreeMap<String, Histogram>,
}

/// The service's metrics. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<Http>,
    /// (model name, model version) -> churn probabilities scored.
    scores: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Reloads of the served model that failed (the previous model kept serving).
    pub model_reload_failures: AtomicU64,
    /// Reloads that put a new model version into service.
    pub model_reloads: AtomicU64,
    /// Reloads of the nightly score file that failed (the previous scores kept serving).
    pub scores_reload_failures: AtomicU64,
    /// Scores whose tier could not be recorded in the alert outbox.
    pub alert_record_failures: AtomicU64,
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

/// Escapes a label value per the Prometheus text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let mut h = lock(&self.http);
        *h.requests
            .entry((route.to_string(), method, status))
            .or_default() += 1;
        h.durations
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(&DURATION_BUCKETS))
            .observe(seconds);
    }

    /// Records the churn probabilities one request scored.
    pub fn observe_scores(&self, model: &str, version: &str, probabilities: &[f64]) {
        let mut s = lock(&self.scores);
        let h = s
            .entry((model.to_string(), version.to_string()))
            .or_insert_with(|| Histogram::new(&SCORE_BUCKETS));
        for &p in probabilities {
            h.observe(p);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, served: Option<(&str, &str)>, alerts: CountersSnapshot) -> String {
        let mut out = String::with_capacity(4096);
        {
            let h = lock(&self.http);
            out.push_str("# HELP churnguard_http_requests_total HTTP requests answered, by route template, method and status.\n");
            out.push_str("# TYPE churnguard_http_requests_total counter\n");
            for ((route, method, status), n) in &h.requests {
                let _ = writeln!(
                    out,
                    "churnguard_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
            out.push_str("# HELP churnguard_http_request_duration_seconds Time to answer an HTTP request, by route template.\n");
            out.push_str("# TYPE churnguard_http_request_duration_seconds histogram\n");
            for (route, hist) in &h.durations {
                hist.render(
                    &mut out,
                    "churnguard_http_request_duration_seconds",
                    &format!("route=\"{}\"", escape(route)),
                );
            }
        }
        {
            let s = lock(&self.scores);
            out.push_str("# HELP churnguard_score Churn probabilities scored online, by model and version.\n");
            out.push_str("# TYPE churnguard_score histogram\n");
            for ((model, version), hist) in s.iter() {
                hist.render(
                    &mut out,
                    "churnguard_score",
                    &format!(
                        "model=\"{}\",model_version=\"{}\"",
                        escape(model),
                        escape(version)
                    ),
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {v}");
        };
        counter(
            &mut out,
            "churnguard_alerts_raised_total",
            "Alerts newly stored in the outbox by this process.",
            alerts.raised,
        );
        counter(
            &mut out,
            "churnguard_alerts_delivered_total",
            "Alert deliveries a sink accepted.",
            alerts.delivered,
        );
        counter(
            &mut out,
            "churnguard_alerts_failed_total",
            "Alert delivery attempts that failed and will be retried.",
            alerts.failed,
        );
        counter(
            &mut out,
            "churnguard_alerts_dead_total",
            "Alert deliveries given up (dead-lettered).",
            alerts.dead,
        );
        counter(
            &mut out,
            "churnguard_alert_record_failures_total",
            "Scores whose tier could not be recorded in the alert outbox.",
            self.alert_record_failures.load(Ordering::Relaxed),
        );
        out.push_str("# HELP churnguard_model_info The model version being served (always 1).\n");
        out.push_str("# TYPE churnguard_model_info gauge\n");
        if let Some((name, version)) = served {
            let _ = writeln!(
                out,
                "churnguard_model_info{{name=\"{}\",version=\"{}\"}} 1",
                escape(name),
                escape(version)
            );
        }
        counter(
            &mut out,
            "churnguard_model_reloads_total",
            "Reloads that put a new model version into service.",
            self.model_reloads.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "churnguard_model_reload_failures_total",
            "Model reloads that failed; the previous model kept serving.",
            self.model_reload_failures.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "churnguard_scores_reload_failures_total",
            "Reloads of the nightly score file that failed; the previous scores kept serving.",
            self.scores_reload_failures.load(Ordering::Relaxed),
        );
        out
    }
}

/// Middleware: counts and times every request under its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let res = next.run(req).await;
    state.metrics.observe_request(
        &route,
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
        let text = m.render(None, CountersSnapshot::default());
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
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
