//! The HTTP API of Dubernetes: a thin axum layer over [`dubernetes_core::Dubernetes`].
//!
//! Every handler validates, calls the core, and maps its errors to a JSON body
//! with a stable `code`, a human `message` and, for bad input, the `field`.
//! Bad input is a 4xx and changes nothing.
//!
//! [`app`] is what a server serves: the routes of [`router`] behind bearer-token
//! authentication (`GET /healthz` excepted), a per-request timeout, a body size
//! limit, and a layer that turns every rejection into the same JSON error body.

pub mod auth;
pub mod serve;

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dubernetes_core::{ApplyOutcome, Dubernetes, Error, FieldError, PodSpec, SpecError};
use serde::{Deserialize, Serialize};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Default per-request deadline (`--request-timeout-seconds`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON error body: `{"code": "...", "message": "...", "field": "...", "fields": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable code.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// The (first) input field at fault, e.g. `access.host`, `body` or `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every invalid field, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
            field: None,
            fields: Vec::new(),
            status: status.as_u16(),
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.field = fields.first().map(|f| f.field.clone());
        self.fields = fields;
        self
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The field a core error message names, when it starts with `field: `.
fn leading_field(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let plausible = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'));
    plausible.then(|| head.to_string())
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Invalid(v) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message).with_fields(v.problems)
            }
            Error::Spec(SpecError::Invalid { source, .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message).with_fields(source.problems)
            }
            Error::Spec(SpecError::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message).with_field("body")
            }
            Error::Spec(ref spec) => {
                let field = spec.field().unwrap_or_else(|| "body".into());
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_spec", message).with_field(field)
            }
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message).with_field("name"),
            Error::StaleGeneration { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_generation", message).with_field("generation")
            }
            Error::Conflict(ref m) => {
                let field = leading_field(m);
                ApiError {
                    field,
                    ..ApiError::new(StatusCode::CONFLICT, "conflict", message)
                }
            }
            Error::Limit(ref m) => {
                let field = leading_field(m);
                ApiError {
                    field,
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded", message)
                }
            }
            Error::Docker { .. } | Error::DockerTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable", message)
            }
            Error::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            Error::Store(_) | Error::Migrate(_) | Error::Corrupt { .. } => {
                // Details (paths, SQL) go to the log, not to the client.
                tracing::error!(error = %message, "store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store could not complete the request; retry, and see the server log if it persists",
                )
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, axum::Json(self)).into_response()
    }
}

/// The answer to an apply.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// `created`, `configured` or `unchanged`.
    pub outcome: ApplyOutcome,
    /// True when nothing was stored (`?dry_run=true`).
    #[serde(default)]
    pub dry_run: bool,
    /// The pod after the apply (absent on dry runs of new pods).
    pub pod: Option<dubernetes_core::Pod>,
}

/// Query parameters of writes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// Validate only; store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Optimistic concurrency: write only if the pod is still at this
    /// generation (same as an `If-Match: "N"` header), else 409 `stale_generation`.
    #[serde(default)]
    pub generation: Option<i64>,
}

/// What [`app`] needs besides the orchestrator.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bearer token every request but `GET /healthz` must carry.
    pub token: auth::Token,
    /// Deadline of one request, from its head to the end of its answer.
    pub request_timeout: Duration,
}

/// The API as served: [`router`] behind authentication, a request deadline,
/// a body limit, and uniform JSON errors. No CORS layer: browsers on other
/// origins cannot read answers, and the token is not a cookie they could send.
pub fn app(orchestrator: Dubernetes, config: ApiConfig) -> Router {
    let timeout = config.request_timeout;
    router(orchestrator)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(config.token, auth::require_token))
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
            "request_timeout",
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
        StatusCode::PAYLOAD_TOO_LARGE => ("body_too_large", Some("body")),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", None),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", Some("Content-Type")),
        StatusCode::BAD_REQUEST if text.contains("query") => ("invalid_query", Some("query")),
        StatusCode::BAD_REQUEST => ("bad_request", None),
        s if s.is_client_error() => ("bad_request", None),
        _ => ("internal", None),
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

/// The generation a write is conditional on: `If-Match: "N"` or `?generation=N`.
fn expected_generation(headers: &HeaderMap, params: &WriteParams) -> Result<Option<i64>, ApiError> {
    let from_header = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => {
            let bad = || {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    "If-Match must be a pod generation as an ETag, e.g. If-Match: \"3\"",
                )
                .with_field("If-Match")
            };
            let text = value.to_str().map_err(|_| bad())?.trim();
            let text = text.strip_prefix("W/").unwrap_or(text);
            let text = text.trim_matches('"');
            Some(text.parse::<i64>().map_err(|_| bad())?)
        }
    };
    match (from_header, params.generation) {
        (Some(a), Some(b)) if a != b => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("If-Match ({a}) and ?generation= ({b}) disagree; send one of them"),
        )
        .with_field("If-Match")),
        (a, b) => Ok(a.or(b)),
    }
}

/// The request body, or the JSON error for a body that is too large or broken.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(
            status,
            code,
            format!("{}; at most {MAX_BODY_BYTES} bytes", e.body_text()),
        )
        .with_field("body")
    })
}

/// Query parameters of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only this pod's events.
    pub pod: Option<String>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<u32>,
}

/// The API's routes, without authentication: serve [`app`], not this.
pub fn router(orchestrator: Dubernetes) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/version", get(version))
        .route("/v1/pods", get(list_pods).post(post_pod))
        .route("/v1/pods/{name}", get(get_pod).put(put_pod).delete(delete_pod))
        .route("/v1/pods/{name}/revisions", get(revisions))
        .route("/v1/pods/{name}/rollback", axum::routing::post(rollback))
        .route("/v1/events", get(events))
        .route("/v1/ingress", get(ingress))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                "no such API route; see docs/api.md",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(orchestrator)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn version(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "server": env!("CARGO_PKG_VERSION"),
        "api": "v1",
        "instance": o.instance(),
        "docker_api": o.engine_api_version(),
    }))
}

async fn ingress(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "port": o.ingress_port().await,
        "error": o.ingress_error(),
        "reloads": o.ingress_reloads(),
    }))
}

async fn list_pods(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.list().await?))
}

async fn get_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let pod = o.get(&name).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", pod.generation)).ok();
    let mut response = axum::Json(pod).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn delete_pod(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let expected = expected_generation(&headers, &params)?;
    o.delete_if(&name, expected).await?;
    Ok(axum::Json(serde_json::json!({"deleted": name})))
}

async fn revisions(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.history(&name).await?))
}

/// Body of `POST /v1/pods/{name}/rollback`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision to go back to; default: the one before the current.
    #[serde(default)]
    pub to_revision: Option<i64>,
}

async fn rollback(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("invalid rollback request: {e}"),
            )
            .with_field("body")
        })?
    };
    let (pod, outcome) = o.undo(&name, request.to_revision).await?;
    Ok(axum::Json(ApplyResponse {
        outcome,
        dry_run: false,
        pod: Some(pod),
    })
    .into_response())
}

async fn events(State(o): State<Dubernetes>, Query(q): Query<EventParams>) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(axum::Json(o.events(q.pod.as_deref(), limit).await?))
}

/// Reads a spec from JSON or YAML, by content type.
fn decode_spec(headers: &HeaderMap, body: &Bytes) -> Result<PodSpec, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the request body is empty; send a pod spec as JSON or YAML",
        )
        .with_field("body"));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body is not valid UTF-8",
        )
        .with_field("body")
    })?;
    match essence.as_str() {
        "application/json" => {
            let spec: PodSpec = dubernetes_core::parse_json_spec(text).map_err(|e| ApiError::from(Error::Spec(e)))?;
            Ok(spec)
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let mut specs = dubernetes_core::parse_specs(text).map_err(|e| ApiError::from(Error::Spec(e)))?;
            if specs.len() != 1 {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_spec",
                    format!("expected exactly one pod spec, got {}", specs.len()),
                )
                .with_field("body"));
            }
            Ok(specs.remove(0))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type {content_type:?} is not supported; send application/json or application/yaml"),
        )
        .with_field("Content-Type")),
    }
}

async fn apply(o: &Dubernetes, spec: PodSpec, params: WriteParams, headers: &HeaderMap) -> Result<Response, ApiError> {
    let expected = expected_generation(headers, &params)?;
    if params.dry_run {
        let outcome = o.dry_run(&spec).await?;
        let pod = o.get(&spec.name).await.ok();
        return Ok(axum::Json(ApplyResponse {
            outcome,
            dry_run: true,
            pod,
        })
        .into_response());
    }
    let (pod, outcome) = o.apply_if(spec, expected).await?;
    let status = if outcome == ApplyOutcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(ApplyResponse {
            outcome,
            dry_run: false,
            pod: Some(pod),
        }),
    )
        .into_response())
}

async fn put_pod(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let spec = decode_spec(&headers, &body)?;
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name_mismatch",
            format!(
                "name: the body names pod {:?} but the path names {name:?}; make them the same",
                spec.name
            ),
        )
        .with_field("name"));
    }
    apply(&o, spec, params, &headers).await
}

async fn post_pod(
    State(o): State<Dubernetes>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let spec = decode_spec(&headers, &body)?;
    apply(&o, spec, params, &headers).await
}
