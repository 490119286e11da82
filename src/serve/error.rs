//! The API's errors: one type whose variants are statuses, the JSON extractor that never
//! lets axum's plain-text rejections through, and the guards (JSON error bodies, panics).
//!
//! `/v1` (and every other non-`/v2` route) answers `{"error": {"code", "message", "field"}}`;
//! `/v2` answers the Open Inference Protocol's `{"error": "..."}`. Library errors other
//! than [`crate::Error::Input`] are logged and answered with a generic message: internals
//! (paths, SQL, decoder messages) never reach a caller.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// The body of every `/v1` error.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for a program (`code`) and for a person (`message`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `malformed_json`, `unsupported_media_type`,
    /// `invalid_input`, `payload_too_large`, `too_many_instances`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `model_not_ready`, `timeout`,
    /// `reload_failed`, `internal`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// The request field at fault (`features.logins_30d`, `instances[3].as_of`), when one is.
    pub field: Option<String>,
}

/// The body of every `/v2` error (Open Inference Protocol).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct V2ErrorBody {
    /// The descriptive message for the error.
    pub error: String,
}

/// An error answered to a caller. Statuses:
///
/// | class | status | code |
/// |---|---|---|
/// | body is not JSON / not an object | 400 | `malformed_json` |
/// | `Content-Type` is not JSON | 415 | `unsupported_media_type` |
/// | well-formed JSON that breaks the contract (wrong type, missing required field or feature, bad date, both or neither of `features`/`activity`) | 422 | `invalid_input` |
/// | body over the limit | 413 | `payload_too_large` |
/// | more instances than `max_batch` (the document's `maxItems`) | 422 | `too_many_instances` |
/// | no or unknown API key | 401 | `unauthorized` |
/// | a valid key without the right (admin routes) | 403 | `forbidden` |
/// | unknown customer, model, version or route | 404 | `not_found` |
/// | no model loaded yet | 503 | `model_not_ready` |
/// | the request ran past the timeout | 503 | `timeout` |
/// | an admin reload that could not load the new version | 409 | `reload_failed` |
/// | anything else: a bug | 500 | `internal` |
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// See [`ErrorDetail::code`].
    pub code: &'static str,
    /// See [`ErrorDetail::message`].
    pub message: String,
    /// See [`ErrorDetail::field`].
    pub field: Option<String>,
}

impl ApiError {
    /// An error with every part given.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the body is not JSON (or not the JSON value expected at the top).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 422: well-formed JSON that breaks the contract, naming the field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).with_field(field)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 413 for a body over the limit.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this server accepts",
        )
    }

    /// 503: no model is loaded yet.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_not_ready",
            "no model is loaded yet: retry when /readyz answers 200",
        )
    }

    /// 500 with a generic message; log the cause before calling this.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error: the server log has the details",
        )
    }

    /// Maps a library error: [`crate::Error::Input`] becomes a 422 naming the field
    /// (prefixed with `prefix`, e.g. `instances[3].`); anything else is logged and
    /// becomes a 500 that says nothing of internals.
    pub fn from_library(e: crate::Error, prefix: &str) -> Self {
        match e {
            crate::Error::Input { field, message } => {
                let field = format!("{prefix}{field}");
                let message = if prefix.is_empty() {
                    message
                } else {
                    format!("{}: {message}", prefix.trim_end_matches('.'))
                };
                Self::invalid(field, message)
            }
            other => {
                tracing::error!(error = %other.chain(), "request failed inside the library");
                Self::internal()
            }
        }
    }

    /// The body of this error in the `/v1` form.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }

    /// The same error in the `/v2` form.
    pub fn into_v2(self) -> V2Error {
        let message = match &self.field {
            Some(f) if !self.message.contains(f.as_str()) => format!("{f}: {}", self.message),
            _ => self.message,
        };
        V2Error {
            status: self.status,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"churnguard\""),
            );
        }
        res
    }
}

/// An error of the `/v2` routes: `{"error": "..."}` (typically 400, per the protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct V2Error {
    /// The HTTP status.
    pub status: StatusCode,
    /// The descriptive message.
    pub message: String,
}

impl V2Error {
    /// 400 with a message.
    pub fn bad(message: impl Into<String>) -> Self {
        V2Error {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        V2Error {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<ApiError> for V2Error {
    fn from(e: ApiError) -> Self {
        e.into_v2()
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            axum::Json(V2ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"churnguard\""),
            );
        }
        res
    }
}

/// A JSON request body read as a [`serde_json::Value`], refusing with [`ApiError`]s:
/// 415 without a JSON content type, 413 over the body limit, 400 when it does not parse.
/// Handlers then walk the value so every error names its field.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The bytes of a request body sent as JSON (415 and 413 as for [`JsonBody`]), not
/// parsed yet: for routes with a fast path that reads them directly.
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
                    || essence.to_ascii_lowercase().ends_with("+json")
            });
        if json_type != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large()
                } else {
                    ApiError::malformed("the request body could not be read")
                }
            })
    }
}

/// Parses a JSON body into a value; 400 naming the syntax error when it does not parse.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Value>(bytes)
        .map_err(|e| ApiError::malformed(format!("the request body is not valid JSON: {e}")))
}

/// Whether a path belongs to the Open Inference Protocol routes (their own error form).
pub fn is_v2(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Middleware: any 4xx/5xx answer that is not JSON already (axum's rejections for a bad
/// path parameter, 404/405, the body limit's 413, the timeout's 503) is rewritten into
/// the route family's JSON error form, keeping the status.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let v2 = is_v2(req.uri().path());
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text)
        .trim()
        .chars()
        .take(300)
        .collect::<String>();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is larger than this server accepts".to_string(),
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request took longer than the server allows".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`".to_string(),
        ),
        s if s.is_client_error() => (
            "bad_request",
            if text.is_empty() {
                s.canonical_reason().unwrap_or("bad request").to_string()
            } else {
                text
            },
        ),
        _ => (
            "internal",
            "internal error: the server log has the details".to_string(),
        ),
    };
    let mut rebuilt = if v2 {
        V2Error { status, message }.into_response()
    } else {
        ApiError::new(status, code, message).into_response()
    };
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

/// Middleware: a handler that panics answers 500 (in the route family's JSON form) instead
/// of dropping the connection. tower-http's `catch-panic` feature is not enabled in this
/// crate, hence this small equivalent.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    let v2 = is_v2(req.uri().path());
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(res) => res,
        Err(()) => {
            tracing::error!("a request handler panicked");
            let e = ApiError::internal();
            if v2 {
                e.into_v2().into_response()
            } else {
                e.into_response()
            }
        }
    }
}

/// Polls a future, turning a panic during a poll into `Err(())`.
struct CatchUnwind<F: Future>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.get_mut().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
