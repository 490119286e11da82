//! The HTTP scoring service: `app(state) -> Router`, `run(config, listener, shutdown)`.
//!
//! # Layout
//!
//! - [`state`]: the shared state, the hot-swapped model and its reload logic.
//! - [`routes`]: `/v1` scoring, nightly scores, models; health, readiness, metrics, OpenAPI.
//! - [`v2`]: the Open Inference Protocol (KServe v2 REST).
//! - [`auth`]: bearer API keys and the admin key.
//! - [`error`]: the error type and its statuses, the JSON extractor, the guards.
//! - [`metrics`]: Prometheus metrics.
//! - [`openapi`]: the OpenAPI document, derived from the handlers.
//! - [`schema`]: the document's schemas of the bodies the handlers read by hand.
//!
//! # Lifecycle
//!
//! [`run`] opens the alert outbox, loads the `production` model (or starts without one:
//! `/readyz` answers 503 until one loads), starts the alert dispatcher and a task that
//! every `reload_interval` re-resolves `production` and re-reads the score file when its
//! modification time changed, then serves until `shutdown` resolves. Shutdown stops
//! accepting, drains requests in flight, then drains the dispatcher.
//!
//! # Statuses
//!
//! A 4xx is the caller's (see [`error::ApiError`] for each class); a 5xx is a bug, or
//! 503 while no model is loaded or when a request outlives `request_timeout`.

pub mod auth;
pub mod error;
pub mod fast;
pub mod metrics;
pub mod openapi;
pub mod recorder;
pub mod routes;
pub mod schema;
pub mod state;
pub mod v2;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::alerts::{AlertPolicy, AlertSink, Dispatcher, JsonlSink, RetryPolicy, WebhookSink};
use crate::{Error, Result};

pub use state::AppState;

/// Everything the service needs, validated by the caller (`main`) before it starts.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The models directory (the registry root).
    pub models: PathBuf,
    /// The registry name served; its `production` alias is what is served.
    pub name: String,
    /// Where [`serve`] listens. [`run`] takes a bound listener instead.
    pub bind: SocketAddr,
    /// Keys accepted on scoring and model routes. Empty: open, and loopback only.
    pub api_keys: Vec<String>,
    /// The key of the admin routes; `None` disables them (unless no API key is set).
    pub admin_key: Option<String>,
    /// The latest nightly score file, for `GET /v1/customers/{id}/score`.
    pub scores: Option<PathBuf>,
    /// The alert outbox (SQLite), shared with the nightly batch.
    pub outbox: PathBuf,
    /// Alerts are appended here as JSON lines, when set.
    pub alert_log: Option<PathBuf>,
    /// Alerts are POSTed here, signed with the secret, when set: `(url, secret)`.
    pub webhook: Option<(String, String)>,
    /// When a score becomes an alert.
    pub policy: AlertPolicy,
    /// How often `production` and the score file are checked for changes.
    pub reload_interval: Duration,
    /// Most instances per batch request (and rows per `/v2` inference).
    pub max_batch: usize,
    /// Largest request body accepted, in bytes, on every route but the batch ones
    /// (`/v1/score/batch`, `/v2/.../infer`), whose limit is [`batch_body_limit`].
    pub max_body_bytes: usize,
    /// A request still running after this is answered 503.
    pub request_timeout: Duration,
    /// A connection whose next request's headers are not complete this long after it
    /// opened, or after its previous response, is closed: half-sent headers, silent
    /// sockets and idle keep-alive connections each hold a file descriptor.
    pub header_timeout: Duration,
    /// Most connections open at once. Beyond it the service stops accepting (new
    /// connections wait in the kernel's backlog) until one closes, so descriptors never
    /// run out and, with [`ServeConfig::header_timeout`], a waiting `/healthz` is
    /// answered within that timeout.
    pub max_connections: usize,
    /// Early-warning rules evaluated beside every model served (`None`: the built-in ones).
    pub rules: Option<Vec<crate::scoring::Rule>>,
    /// How failed alert deliveries are retried and when they are given up.
    pub retry: RetryPolicy,
    /// How long a claimed delivery is reserved for this process: another replica on
    /// the same outbox takes it over once it expires (this one was killed mid-send).
    pub alert_lease: Duration,
    /// The score history directory (`GET /v1/customers/{id}/history`, the trend of
    /// fresh scores); `None`: neither.
    pub history: Option<PathBuf>,
    /// What alerts carry besides the score: profile attributes, plan and owner (read from
    /// a request's `activity.customer`) and the due date.
    pub task: crate::alerts::TaskConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            models: PathBuf::from(crate::registry::DEFAULT_MODELS_DIR),
            name: crate::registry::DEFAULT_NAME.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys: Vec::new(),
            admin_key: None,
            scores: None,
            outbox: PathBuf::from(crate::registry::DEFAULT_MODELS_DIR)
                .join(crate::registry::DEFAULT_NAME)
                .join("alerts.db"),
            alert_log: None,
            webhook: None,
            policy: AlertPolicy::default(),
            reload_interval: Duration::from_secs(2),
            max_batch: 1000,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 1000,
            rules: None,
            retry: RetryPolicy::default(),
            alert_lease: crate::alerts::dispatch::DEFAULT_LEASE,
            history: None,
            task: crate::alerts::TaskConfig::default(),
        }
    }
}

/// Body bytes allowed per batch instance: a compact instance of a 60-feature model is
/// about 1,060 bytes; 4 KiB leaves room for long ids, pretty-printed JSON and `activity`.
pub const BATCH_BYTES_PER_INSTANCE: usize = 4096;

/// The body limit of the batch routes: room for `max_batch` instances
/// ([`BATCH_BYTES_PER_INSTANCE`] each), and never less than `max_body_bytes`. With the
/// defaults (1 MiB, 1,000 instances) 4,096,000 bytes: a full batch always fits, and its
/// instance count, not its size, is what a caller runs into.
pub fn batch_body_limit(max_body_bytes: usize, max_batch: usize) -> usize {
    max_body_bytes.max(max_batch.saturating_mul(BATCH_BYTES_PER_INSTANCE))
}

/// The router with every route and layer, over a ready state. Tests drive it with
/// `tower::ServiceExt::oneshot`; [`run`] serves it.
pub fn app(state: AppState) -> Router {
    let (max_body_bytes, request_timeout) = (state.max_body_bytes, state.request_timeout);
    let max_batch_body_bytes = state.max_batch_body_bytes;
    // The batch routes take up to `max_batch_body_bytes` (the outer limit below); every
    // other route `max_body_bytes`.
    let batch = Router::new()
        .route("/v1/score/batch", post(routes::score_batch))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key));
    let protected = Router::new()
        .route("/v1/score", post(routes::score))
        .route("/v1/customers/{id}/score", get(routes::customer_score))
        .route("/v1/customers/{id}/history", get(routes::customer_history))
        .route("/v1/models", get(routes::list_models))
        .route("/v1/models/{name}", get(routes::model_detail))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_metadata_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_ready_version),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require_api_key))
        .route_layer(RequestBodyLimitLayer::new(max_body_bytes))
        .route_layer(DefaultBodyLimit::max(max_body_bytes));
    let admin = Router::new()
        .route("/v1/admin/reload", post(routes::admin_reload))
        .route_layer(from_fn_with_state(state.clone(), auth::require_admin_key))
        .route_layer(RequestBodyLimitLayer::new(max_body_bytes))
        .route_layer(DefaultBodyLimit::max(max_body_bytes));
    let open = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready));
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(FastUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |m| m.as_str());
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), route, request_id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn(error::json_errors))
        .layer(from_fn(error::catch_panic))
        .layer(RequestBodyLimitLayer::new(max_batch_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(DefaultBodyLimit::max(max_batch_body_bytes));
    Router::new()
        .merge(batch)
        .merge(protected)
        .merge(admin)
        .merge(open)
        .fallback(routes::fallback)
        .layer(layers)
        .with_state(state)
}

/// Request ids in UUID v4 form from a per-thread generator seeded once from the OS:
/// unique, not secret, and without the system call per request that
/// `uuid::Uuid::new_v4` makes.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastUuid;

impl MakeRequestId for FastUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        thread_local! {
            static STATE: std::cell::Cell<u128> =
                std::cell::Cell::new(uuid::Uuid::new_v4().as_u128());
        }
        let bits = STATE.with(|s| {
            // A Weyl sequence through a 128-bit mix (splitmix-style): distinct per call.
            let next = s
                .get()
                .wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            s.set(next);
            let mut z = next;
            z = (z ^ (z >> 67)).wrapping_mul(0xbf58_476d_1ce4_e5b9_94d0_49bb_1331_11eb);
            z ^ (z >> 61)
        });
        let id = uuid::Builder::from_random_bytes(bits.to_le_bytes())
            .into_uuid()
            .hyphenated()
            .to_string();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The alert sinks the configuration asks for.
fn sinks(config: &ServeConfig) -> Result<Vec<Arc<dyn AlertSink>>> {
    let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
    if let Some(log) = &config.alert_log {
        sinks.push(Arc::new(JsonlSink::new(log.clone())));
    }
    if let Some((url, secret)) = &config.webhook {
        sinks.push(Arc::new(WebhookSink::new(
            url,
            secret.as_bytes().to_vec(),
            Duration::from_secs(10),
        )?));
    }
    Ok(sinks)
}

/// Refuses to serve a non-loopback address without API keys.
fn check_exposure(config: &ServeConfig, addr: SocketAddr) -> Result<()> {
    let keys = auth::Keys::new(&config.api_keys, config.admin_key.as_deref());
    if keys.is_open() {
        if !addr.ip().is_loopback() {
            return Err(Error::Config(format!(
                "refusing to serve {addr} without API keys: anyone who can reach it could score \
                 customers and read their scores. Set CHURNGUARD_API_KEYS (or --api-keys-file), \
                 or bind a loopback address such as 127.0.0.1"
            )));
        }
        tracing::warn!(%addr, "no API key configured: serving loopback without authentication");
    }
    Ok(())
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains requests in flight
/// and the alert dispatcher. Tests pass a listener bound to `127.0.0.1:0`.
pub async fn run(
    config: ServeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("the listener has no local address: {e}")))?;
    check_exposure(&config, addr)?;
    let sinks = sinks(&config)?;
    let cfg = config.clone();
    let state = tokio::task::spawn_blocking(move || AppState::open(&cfg))
        .await
        .map_err(|e| Error::Config(format!("start-up task failed: {e}")))??;

    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = if sinks.is_empty() {
        tracing::info!(
            "no alert sink configured: alerts stay in the outbox for another process to deliver"
        );
        None
    } else {
        Some(
            Dispatcher::new(state.outbox.clone(), sinks, config.retry)?
                .with_lease(config.alert_lease)
                .spawn(stop_rx.clone()),
        )
    };
    let reloader = tokio::spawn(reload_loop(
        state.clone(),
        config.reload_interval,
        stop_rx.clone(),
    ));

    tracing::info!(%addr, model = %config.name, "serving");
    let router = app(state);
    accept_loop(
        listener,
        router,
        Limits {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
        },
        shutdown,
    )
    .await;
    tracing::info!("no longer accepting requests; draining alerts");
    let _ = stop_tx.send(true);
    let _ = reloader.await;
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    Ok(())
}

/// What bounds each connection and their number (from [`ServeConfig`]).
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    max_connections: usize,
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` resolves, then waits for
/// the open connections to finish (idle ones close at once, a request in flight is
/// answered first).
///
/// Hand-written rather than `axum::serve`, which sets no header-read timeout and no
/// bound on connections: about 20,000 silent sockets once exhausted the descriptor limit
/// and `/healthz` stopped answering. Here hyper's header-read timer (it restarts whenever
/// the connection waits for a request, so it also ends idle keep-alives) closes silent
/// connections, a semaphore bounds how many are open, and an accept error such as
/// `EMFILE` is logged and retried after a short pause instead of spinning.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = limits.max_connections.clamp(1, 1 << 20);
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOMEM: the pause lets descriptors free up.
                    tracing::error!(error = %e, "accept error; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if permits.available_permits() == 0 {
            tracing::warn!(
                max_connections = max,
                "connection limit reached: new connections wait until one closes"
            );
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req| tower::ServiceExt::oneshot(router.clone(), req));
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async {
                    let _ = closing.wait_for(|c| *c).await;
                } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a permit until it ends: all permits back means all closed.
    let _ = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

/// Errors of one connection that was being accepted (the peer gave up): nothing to wait
/// for before accepting the next.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Every `interval`, re-resolves `production` and re-reads a changed score file, on the
/// blocking pool, until `stop` turns true.
async fn reload_loop(state: AppState, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start-up just loaded
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            s.reload_model(false);
            s.reload_scores(false);
        })
        .await;
    }
}

/// Binds `config.bind`, prints the address, and serves until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    // Before binding, so a wrong --models fails before "serving" is printed.
    state::check_registry(&config.models)?;
    if !config.bind.ip().is_loopback() {
        check_exposure(&config, config.bind)?;
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("the listener has no local address: {e}")))?;
    println!("churnguard serving `{}` on http://{addr}", config.name);
    println!("  try: curl http://{addr}/readyz");
    run(config, listener, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}
