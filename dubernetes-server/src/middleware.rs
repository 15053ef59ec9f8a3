//! The layers every request passes: request metrics, the deadline,
//! bearer-token authentication ([`crate::auth`]), and the rewrite of axum's
//! plain-text rejections into the JSON error body.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use dubernetes_core::Metrics;

use crate::error::{ApiError, ErrorCode};
use crate::{ApiConfig, auth};

/// `router` behind the layers, outermost first: request metrics (so refusals
/// and timeouts are counted too), the deadline, then authentication, then the
/// JSON error rewrite.
pub(crate) fn wrap(router: Router, config: &ApiConfig, metrics: Metrics) -> Router {
    let timeout = config.request_timeout;
    let sessions = std::sync::Arc::new(crate::session::Sessions::default());
    let auth = auth::Auth {
        token: config.token.clone(),
        sessions: sessions.clone(),
    };
    router
        .merge(crate::dashboard::routes(sessions))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(auth, auth::require_token))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            deadline(timeout, request, next)
        }))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            measure(metrics.clone(), request, next)
        }))
}

/// Counts a request by method, matched route template (`/v1/pods/{name}`,
/// never the raw path: labels stay bounded) and status, and times it to the
/// response's head. Requests no route matches are `route="unmatched"`.
async fn measure(metrics: Metrics, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Methods are bounded too: any other is counted as `other`.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let response = next.run(request).await;
    metrics.api_request(method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// Answers 503 `request_timeout` when a request takes longer than its deadline.
async fn deadline(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RequestTimeout,
            format!("the request did not finish within {timeout:?}; retry later"),
        )
        .into_response(),
    }
}

/// Rewrites the plain-text rejections of axum's extractors (body too large,
/// bad query string, wrong method...) into the JSON error body.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, field) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BodyTooLarge, Some("body")),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::MethodNotAllowed, None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorCode::UnsupportedMediaType, Some("Content-Type")),
        StatusCode::BAD_REQUEST if text.contains("query") => (ErrorCode::InvalidQuery, Some("query")),
        StatusCode::BAD_REQUEST => (ErrorCode::BadRequest, None),
        s if s.is_client_error() => (ErrorCode::BadRequest, None),
        _ => (ErrorCode::Internal, None),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let error = ApiError::new(status, code, message).with_optional_field(field.map(str::to_string));
    let mut out = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
