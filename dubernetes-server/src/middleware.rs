//! The layers every request passes: the deadline, bearer-token
//! authentication ([`crate::auth`]), and the rewrite of axum's plain-text
//! rejections into the JSON error body.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::{ApiConfig, auth};

/// `router` behind the layers, outermost first: the deadline, then
/// authentication, then the JSON error rewrite.
pub(crate) fn wrap(router: Router, config: &ApiConfig) -> Router {
    let timeout = config.request_timeout;
    router
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(
            config.token.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            deadline(timeout, request, next)
        }))
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
    let mut error = ApiError::new(status, code, message);
    error.field = field.map(str::to_string);
    let mut out = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
