//! API keys: `Authorization: Bearer <key>` checked in constant time.
//!
//! Scoring and model routes accept any API key (or the admin key); admin routes only the
//! admin key. With no API key configured the service only binds loopback (see
//! [`super::run`]) and every route is open, admin included, for local use.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{is_v2, ApiError};
use super::state::AppState;

/// Keys from a comma-separated list (`CHURNGUARD_API_KEYS`); blanks are dropped.
pub fn split_key_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect()
}

/// Keys from a key file: one per line; blank lines and `#` comments are skipped.
pub fn parse_key_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Reads and parses a key file ([`parse_key_file`]).
pub fn read_key_file(path: &std::path::Path) -> crate::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    Ok(parse_key_file(&text))
}

/// The configured keys, kept only as SHA-256 digests: comparing digests of equal length
/// in constant time leaks neither a key's content nor its length.
#[derive(Clone)]
pub struct Keys {
    api: Vec<[u8; 32]>,
    admin: Option<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("api_keys", &self.api.len())
            .field("admin_key", &self.admin.is_some())
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    /// Keys from the configuration; blank entries are dropped.
    pub fn new(api_keys: &[String], admin_key: Option<&str>) -> Keys {
        Keys {
            api: api_keys
                .iter()
                .map(|k| k.trim())
                .filter(|k| !k.is_empty())
                .map(digest)
                .collect(),
            admin: admin_key
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(digest),
        }
    }

    /// No API key configured: every route is open (loopback only).
    pub fn is_open(&self) -> bool {
        self.api.is_empty()
    }

    /// Whether `key` is one of the API keys. Looks at every key whatever matches.
    fn is_api(&self, key: &str) -> bool {
        let d = digest(key);
        let mut found = subtle::Choice::from(0);
        for k in &self.api {
            found |= d.ct_eq(k);
        }
        found.into()
    }

    /// Whether `key` is the admin key.
    fn is_admin(&self, key: &str) -> bool {
        self.admin
            .as_ref()
            .is_some_and(|a| bool::from(digest(key).ct_eq(a)))
    }
}

/// The key of an `Authorization: Bearer <key>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

fn refuse(path: &str, e: ApiError) -> Response {
    if is_v2(path) {
        e.into_v2().into_response()
    } else {
        e.into_response()
    }
}

const MISSING: &str = "missing or unknown API key: send `Authorization: Bearer <key>`";

/// Middleware of the scoring and model routes: any API key, or the admin key.
pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &state.keys;
    if keys.is_open() {
        return next.run(req).await;
    }
    match bearer(req.headers()) {
        Some(k) if keys.is_api(k) || keys.is_admin(k) => next.run(req).await,
        _ => refuse(req.uri().path(), ApiError::unauthorized(MISSING)),
    }
}

/// Middleware of the admin routes: the admin key only (a valid API key gets 403).
pub async fn require_admin_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let keys = &state.keys;
    if keys.admin.is_none() {
        if keys.is_open() {
            return next.run(req).await;
        }
        return refuse(
            req.uri().path(),
            ApiError::forbidden(
                "admin routes are disabled: no admin key is configured (CHURNGUARD_ADMIN_KEY)",
            ),
        );
    }
    match bearer(req.headers()) {
        Some(k) if keys.is_admin(k) => next.run(req).await,
        Some(k) if keys.is_api(k) => refuse(
            req.uri().path(),
            ApiError::forbidden("this route needs the admin key, not an API key"),
        ),
        _ => refuse(req.uri().path(), ApiError::unauthorized(MISSING)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_configured_keys_match_and_blank_ones_are_dropped() {
        let keys = Keys::new(&["k1".into(), " ".into(), "k2".into()], Some("adm"));
        assert!(keys.is_api("k1") && keys.is_api("k2"));
        assert!(!keys.is_api("k3") && !keys.is_api("") && !keys.is_api("adm"));
        assert!(keys.is_admin("adm") && !keys.is_admin("k1"));
        assert!(!keys.is_open());
        assert!(Keys::new(&[" ".into()], None).is_open());
        assert!(!format!("{keys:?}").contains("k1"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_key() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
