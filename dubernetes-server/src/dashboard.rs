//! The live dashboard: static files embedded in the binary (no build step,
//! no CDN: it works offline), the sign-in by single-use link code, and the
//! headers that keep it safe. The page reads the API with its session cookie:
//! the pods and events through the watch stream (`EventSource`, no polling),
//! a pod's log tail through `logs?follow=true`. It is read-only.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::session::{self, Sessions};

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/app.css");

/// No inline script or style, nothing from another origin, no framing, no forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The answer of `POST /v1/dashboard/links`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DashboardLink {
    /// Open this path on the server (`/dashboard/login?code=...`) within
    /// `expires_in_seconds`; it works once.
    pub path: String,
    /// Seconds the link stays valid.
    pub expires_in_seconds: u64,
}

/// The dashboard's routes: the pages (open: they hold no data), the sign-in,
/// and the link-code API (behind the token).
pub(crate) fn routes(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route("/dashboard", get(|| async { redirect("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/dashboard/login", get(login))
        .route("/v1/dashboard/links", post(new_link))
        .with_state(sessions)
}

fn hardened(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    hardened(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn redirect(to: &'static str) -> Response {
    hardened((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// Query of `GET /dashboard/login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginParams {
    code: String,
}

/// Exchanges a link code for a session cookie and redirects to the clean URL.
/// Refused when another site sent the browser here (login CSRF).
/// A `HEAD` (what link previewers and some mail scanners send first) changes
/// nothing: the code stays good for the browser's `GET`.
async fn login(
    State(sessions): State<Arc<Sessions>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<LoginParams>,
) -> Response {
    if method == Method::HEAD {
        return asset("text/html; charset=utf-8", "");
    }
    if session::is_cross_site(&headers) {
        return hardened(
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "a dashboard link works only when opened directly, not from another site",
            )
            .into_response(),
        );
    }
    let Some(id) = sessions.exchange(&q.code) else {
        return hardened(
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "this dashboard link is expired or was used already; run `dubectl dashboard` for a new one",
            )
            .into_response(),
        );
    };
    let mut response = redirect("/dashboard/");
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A short-lived, single-use sign-in link for the dashboard (`dubectl dashboard`).
/// Open the returned path on the server in a browser within `expires_in_seconds`:
/// it sets an HttpOnly, SameSite=Strict session cookie that may read the API
/// (never write) and redirects to `/dashboard/`.
#[utoipa::path(post, path = "/v1/dashboard/links", tag = "server", security(("bearer" = [])),
    responses(
        (status = 200, body = DashboardLink),
        (status = 503, body = ApiError, description = "too_many_sessions: 1000 links are live; retry in a minute")))]
pub(crate) async fn new_link(State(sessions): State<Arc<Sessions>>) -> Result<axum::Json<DashboardLink>, ApiError> {
    let code = sessions.new_link().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooManySessions,
            format!("{} dashboard links are live; retry in a minute", session::MAX_LIVE),
        )
    })?;
    Ok(axum::Json(DashboardLink {
        path: format!("/dashboard/login?code={code}"),
        expires_in_seconds: session::LINK_TTL.as_secs(),
    }))
}
