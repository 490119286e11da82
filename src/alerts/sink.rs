//! Where alerts go: a signed HTTP webhook, a JSON lines file, the log.
//!
//! Sinks are called at least once per alert (see the module docs of [`super`]): a
//! receiver deduplicates on the `Idempotency-Key` header / `idempotency_key` field.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Alert;
use crate::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// What [`AlertSink::deliver`] returns: a boxed future, so the trait stays object-safe
/// (`Arc<dyn AlertSink>`) without the `async_trait` crate.
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for alerts.
pub trait AlertSink: Send + Sync {
    /// A stable name, unique among a dispatcher's sinks: the outbox tracks each
    /// alert's delivery per sink name.
    fn name(&self) -> &str;

    /// Delivers one alert. `Ok` means the destination has it durably.
    fn deliver<'a>(&'a self, alert: &'a Alert) -> DeliveryFuture<'a>;
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (network error, timeout, 3xx, 408, 429, 5xx, I/O error).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The receiver's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (4xx other than 408/429, an alert that cannot be encoded).
    #[error("{0}")]
    Permanent(String),
}

impl SinkError {
    /// A retryable error without a `Retry-After`.
    pub fn retryable(message: impl Into<String>) -> SinkError {
        SinkError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The `X-Churnguard-Signature` value for a body sent at `timestamp`:
/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Checks an `X-Churnguard-Signature` header against the body and the
/// `X-Churnguard-Timestamp` header, in constant time. Receivers should also refuse
/// timestamps far from their clock (say five minutes) to stop replays.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&sig).is_ok()
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` value: delay seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, as seen from `now`; one in the past is zero),
/// capped at [`MAX_RETRY_AFTER`]. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// POSTs each alert as JSON to a URL, signed with HMAC-SHA256.
///
/// Headers: `Content-Type: application/json`, `X-Churnguard-Timestamp` (Unix seconds),
/// `X-Churnguard-Signature` (see [`sign`]), `Idempotency-Key`. A 2xx is delivered;
/// 408, 429, 5xx, redirects (not followed) and network errors are retried, honouring
/// `Retry-After`; other 4xx are permanent.
pub struct WebhookSink {
    name: String,
    url: reqwest::Url,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A webhook named `webhook` posting to `url` (http or https), signing with `secret`
    /// (must not be empty), giving up on an attempt after `timeout`.
    pub fn new(url: &str, secret: impl Into<Vec<u8>>, timeout: Duration) -> Result<WebhookSink> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("alert webhook `{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "alert webhook `{url}`: only http and https URLs are supported"
            )));
        }
        let secret = secret.into();
        if secret.is_empty() {
            return Err(Error::Config(
                "alert webhook: the signing secret (CHURNGUARD_WEBHOOK_SECRET) is empty".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("churnguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("alert webhook HTTP client: {e}")))?;
        Ok(WebhookSink {
            name: "webhook".into(),
            url: parsed,
            secret,
            client,
        })
    }

    /// Renames the sink (needed when a dispatcher has two webhooks).
    pub fn with_name(mut self, name: impl Into<String>) -> WebhookSink {
        self.name = name.into();
        self
    }

    async fn post(&self, alert: &Alert) -> Result<(), SinkError> {
        let body = serde_json::to_vec(alert)
            .map_err(|e| SinkError::Permanent(format!("encoding the alert: {e}")))?;
        let timestamp = super::now_secs().to_string();
        let signature = sign(&self.secret, &timestamp, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Churnguard-Signature", signature)
            .header("X-Churnguard-Timestamp", timestamp)
            .header("Idempotency-Key", alert.idempotency_key.as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_builder() {
                    SinkError::Permanent(format!("building the request: {e}"))
                } else {
                    SinkError::retryable(format!("POST {}: {}", self.url, crate::error::Chain(&e)))
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let mut response = response;
        let excerpt = match response.chunk().await {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes)
                .chars()
                .take(200)
                .collect::<String>(),
            _ => String::new(),
        };
        let message = format!("POST {} answered {status}: {}", self.url, excerpt.trim());
        let code = status.as_u16();
        // A redirect is retried too: a misrouted receiver (a proxy in maintenance) is
        // more often fixed than permanent, and the deadline bounds the cost.
        if code == 408 || code == 429 || status.is_server_error() || status.is_redirection() {
            Err(SinkError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(SinkError::Permanent(message))
        }
    }
}

impl AlertSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> DeliveryFuture<'a> {
        Box::pin(self.post(alert))
    }
}

/// Appends one JSON line per alert to a file, fsynced before the delivery counts.
///
/// At least once: an alert re-sent after a crash (or re-claimed after its lease) is
/// appended again; readers deduplicate on `idempotency_key`.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    name: String,
    path: PathBuf,
    /// Serialises appends from this process so lines never interleave.
    lock: Arc<Mutex<()>>,
}

impl JsonlSink {
    /// A sink named `jsonl` appending to `path` (created on first delivery; its
    /// directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> JsonlSink {
        JsonlSink {
            name: "jsonl".into(),
            path: path.into(),
            lock: Arc::default(),
        }
    }

    /// Renames the sink.
    pub fn with_name(mut self, name: impl Into<String>) -> JsonlSink {
        self.name = name.into();
        self
    }

    /// The file written.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl AlertSink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> DeliveryFuture<'a> {
        let line = serde_json::to_vec(alert).map(|mut v| {
            v.push(b'\n');
            v
        });
        let path = self.path.clone();
        let lock = Arc::clone(&self.lock);
        Box::pin(async move {
            let line =
                line.map_err(|e| SinkError::Permanent(format!("encoding the alert: {e}")))?;
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                // One write of the whole line: O_APPEND keeps it in one piece.
                file.write_all(&line)?;
                file.sync_data()
            })
            .await
            .map_err(|e| SinkError::retryable(format!("{shown}: writer task failed: {e}")))?
            .map_err(|e| SinkError::retryable(format!("{shown}: {e}")))
        })
    }
}

/// Logs each alert (`tracing`, target `churnguard::alerts`, level INFO): for the demo
/// and for deployments that ship logs.
#[derive(Debug, Clone, Default)]
pub struct LogSink;

impl AlertSink for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> DeliveryFuture<'a> {
        Box::pin(async move {
            tracing::info!(
                target: "churnguard::alerts",
                idempotency_key = %alert.idempotency_key,
                customer_id = %alert.customer_id,
                tier = %alert.tier,
                previous_tier = ?alert.previous_tier,
                churn_probability = alert.churn_probability,
                source = %alert.source,
                "churn alert"
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{ModelRef, Tier};

    #[test]
    fn a_signature_verifies_only_with_the_same_secret_timestamp_and_body() {
        let sig = sign(b"s3cret", "1700000000", b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_signature(
            b"s3cret",
            "1700000000",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"other",
            "1700000000",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000001",
            b"{\"a\":1}",
            &sig
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            b"{\"a\":2}",
            &sig
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            b"{\"a\":1}",
            &sig[7..]
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            b"{\"a\":1}",
            "sha256=zz"
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            b"{\"a\":1}",
            &sig[..40]
        ));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date_and_capped_at_an_hour() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let secs = |v| parse_retry_after(v, now).map(|d| d.as_secs());
        assert_eq!(secs("120"), Some(120));
        assert_eq!(secs(" 0 "), Some(0));
        assert_eq!(secs("Wed, 21 Oct 2015 07:30:30 GMT"), Some(150));
        assert_eq!(
            secs("Wed, 21 Oct 2015 07:00:00 GMT"),
            Some(0),
            "in the past"
        );
        assert_eq!(secs("86400"), Some(3600));
        assert_eq!(secs("Thu, 22 Oct 2015 07:28:00 GMT"), Some(3600));
        assert_eq!(secs("soon"), None);
        assert_eq!(secs("-5"), None);
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret() {
        let t = Duration::from_secs(1);
        assert!(WebhookSink::new("ftp://x", "s", t).is_err());
        assert!(WebhookSink::new("not a url", "s", t).is_err());
        assert!(WebhookSink::new("http://127.0.0.1:1/hook", "", t).is_err());
        let sink = WebhookSink::new("https://crm.example/hook", "s", t).unwrap();
        assert_eq!(sink.name(), "webhook");
        assert!(!format!("{sink:?}").contains("\"s\""));
    }

    #[tokio::test]
    async fn the_jsonl_sink_appends_one_parseable_line_per_alert() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonlSink::new(dir.path().join("alerts.jsonl"));
        let model = ModelRef {
            name: "churn".into(),
            version: "v1".into(),
        };
        let a = Alert::new(model.clone(), "c1", 0.9, Tier::High, None, 0, "batch");
        let b = Alert::new(model, "c2", 0.8, Tier::High, Some(Tier::Low), 0, "batch");
        sink.deliver(&a).await.unwrap();
        sink.deliver(&b).await.unwrap();
        let text = std::fs::read_to_string(sink.path()).unwrap();
        let lines: Vec<Alert> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![a, b]);
    }

    #[tokio::test]
    async fn a_jsonl_sink_in_a_missing_directory_fails_retryably() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonlSink::new(dir.path().join("missing/alerts.jsonl"));
        let model = ModelRef {
            name: "churn".into(),
            version: "v1".into(),
        };
        let a = Alert::new(model, "c1", 0.9, Tier::High, None, 0, "batch");
        assert!(matches!(
            sink.deliver(&a).await,
            Err(SinkError::Retryable { .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_webhook_fails_retryably() {
        // Bind then drop a listener: the port is closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = WebhookSink::new(
            &format!("http://127.0.0.1:{port}/hook"),
            "s",
            Duration::from_secs(2),
        )
        .unwrap();
        let model = ModelRef {
            name: "churn".into(),
            version: "v1".into(),
        };
        let a = Alert::new(model, "c1", 0.9, Tier::High, None, 0, "batch");
        assert!(matches!(
            sink.deliver(&a).await,
            Err(SinkError::Retryable { .. })
        ));
    }
}
