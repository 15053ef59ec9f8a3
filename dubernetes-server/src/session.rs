//! Browser sessions of the dashboard, without the API token ever in a URL.
//!
//! `POST /v1/dashboard/links` (with the token) makes a **link code**: random,
//! single-use, valid for [`LINK_TTL`]. `GET /dashboard/login?code=...`
//! exchanges it for a **session**: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, valid for [`SESSION_TTL`], then redirects to the
//! clean `/dashboard/` URL. A session may only read: the middleware accepts it
//! for `GET` of the read-only API routes ([`cookie_may_read`]), never for a
//! write. Only digests of codes and session ids are kept, compared as map
//! keys of SHA-256 digests (a timing difference tells nothing about the
//! secret). At most [`MAX_LIVE`] of each are live; expired ones are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use sha2::{Digest, Sha256};

/// How long a link code may be exchanged.
pub const LINK_TTL: Duration = Duration::from_secs(60);
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most live link codes, and most live sessions.
pub const MAX_LIVE: usize = 1000;
/// The session cookie's name.
pub const COOKIE: &str = "dubernetes_session";

type Digest32 = [u8; 32];

fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// Live link codes and sessions, by digest, with their expiry.
#[derive(Debug, Default)]
pub struct Sessions {
    links: Mutex<HashMap<Digest32, Instant>>,
    sessions: Mutex<HashMap<Digest32, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inserts a new secret valid for `ttl`, or None when `MAX_LIVE` are live.
fn issue(map: &Mutex<HashMap<Digest32, Instant>>, ttl: Duration) -> Option<String> {
    let now = Instant::now();
    let mut map = lock(map);
    map.retain(|_, expiry| *expiry > now);
    if map.len() >= MAX_LIVE {
        return None;
    }
    let secret = crate::token::generate();
    map.insert(digest(&secret), now + ttl);
    Some(secret)
}

impl Sessions {
    /// A new single-use link code, or None when too many are live.
    pub fn new_link(&self) -> Option<String> {
        issue(&self.links, LINK_TTL)
    }

    /// Exchanges a link code (once) for a new session id.
    pub fn exchange(&self, code: &str) -> Option<String> {
        let valid = lock(&self.links)
            .remove(&digest(code))
            .is_some_and(|expiry| expiry > Instant::now());
        if valid {
            issue(&self.sessions, SESSION_TTL)
        } else {
            None
        }
    }

    /// Whether a session id is live.
    pub fn is_live(&self, id: &str) -> bool {
        lock(&self.sessions)
            .get(&digest(id))
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

/// The session id in a request's `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// Whether a request came from another site (`Sec-Fetch-Site: cross-site` or
/// `same-site`, or an `Origin` that is not the request's own host). Browsers
/// send these headers; a request without them is not a browser's cross-site one.
pub fn is_cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), host) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            origin_host != host
        }
        (Some(_), None) => true,
    }
}

/// The API routes a dashboard session may use: reads only.
pub fn cookie_may_read(method: &Method, path: &str) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["v1", "pods"]
            | ["v1", "pods", _]
            | ["v1", "pods", _, "logs" | "revisions"]
            | ["v1", "events" | "watch" | "version" | "ingress"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_code_works_once_and_sessions_are_checked() {
        let s = Sessions::default();
        let code = s.new_link().expect("code");
        let session = s.exchange(&code).expect("session");
        assert!(s.exchange(&code).is_none(), "single use");
        assert!(s.is_live(&session));
        assert!(!s.is_live(&code));
        assert!(!s.is_live("nope"));
    }

    #[test]
    fn only_reads_are_open_to_a_cookie() {
        assert!(cookie_may_read(&Method::GET, "/v1/pods"));
        assert!(cookie_may_read(&Method::GET, "/v1/pods/web/logs"));
        assert!(cookie_may_read(&Method::GET, "/v1/watch"));
        assert!(!cookie_may_read(&Method::PUT, "/v1/pods/web"));
        assert!(!cookie_may_read(&Method::POST, "/v1/pods/web/rollback"));
        assert!(!cookie_may_read(&Method::DELETE, "/v1/pods/web"));
        assert!(!cookie_may_read(&Method::GET, "/metrics"));
        assert!(!cookie_may_read(&Method::POST, "/v1/dashboard/links"));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_cross_site(&h));
        h.insert("sec-fetch-site", "cross-site".parse().expect("value"));
        assert!(is_cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().expect("value"));
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().expect("value"));
        assert!(!is_cross_site(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().expect("value"));
        assert!(is_cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=b; dubernetes_session=xyz".parse().expect("value"));
        assert_eq!(session_cookie(&h), Some("xyz"));
    }
}
