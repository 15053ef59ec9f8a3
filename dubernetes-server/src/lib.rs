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

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dubernetes_core::{
    ApplyOutcome, DEFAULT_MAX_LOG_FOLLOW_REPLICAS, DEFAULT_MAX_LOG_FOLLOWS, Dubernetes, Error, FieldError,
    FollowLimits, LogOptions, PodSpec, SpecError,
};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Default per-request deadline (`--request-timeout-seconds`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The stable, machine-readable codes of error bodies. Clients match on
/// these, never on messages; every one is documented in `docs/api.md` (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The pod spec cannot be read or is invalid (`field`/`fields` say where).
    InvalidSpec,
    /// The request body is not what the route expects.
    InvalidBody,
    /// A write without a body.
    EmptyBody,
    /// The request body is larger than the limit.
    BodyTooLarge,
    /// A query parameter is unknown or malformed.
    InvalidQuery,
    /// A header (e.g. `If-Match`) is malformed.
    InvalidHeader,
    /// Any other malformed request.
    BadRequest,
    /// The name in the body differs from the one in the path.
    NameMismatch,
    /// The bearer token is missing or wrong.
    Unauthorized,
    /// The pod does not exist.
    NotFound,
    /// No such API route.
    NoSuchRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. the host is taken).
    Conflict,
    /// A conditional write (`If-Match`) found the pod at another generation.
    StaleGeneration,
    /// A watch asked for a version the change feed no longer holds (HTTP 410): list again.
    Expired,
    /// The content type is neither JSON nor YAML.
    UnsupportedMediaType,
    /// A limit of the instance was reached.
    LimitExceeded,
    /// Anything else; the message says what.
    Internal,
    /// The Docker engine could not be reached or refused a call.
    EngineUnavailable,
    /// The store could not complete the request.
    StoreUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The request did not finish within the server's request deadline.
    RequestTimeout,
    /// A wait did not finish in time.
    Timeout,
    /// The server follows as many log streams as it allows at once (`--max-log-follows`): retry later.
    TooManyLogStreams,
}

impl ErrorCode {
    /// Every code, for documentation checks.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidSpec,
        ErrorCode::InvalidBody,
        ErrorCode::EmptyBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidHeader,
        ErrorCode::BadRequest,
        ErrorCode::NameMismatch,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::NoSuchRoute,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::StaleGeneration,
        ErrorCode::Expired,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::LimitExceeded,
        ErrorCode::Internal,
        ErrorCode::EngineUnavailable,
        ErrorCode::StoreUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::RequestTimeout,
        ErrorCode::Timeout,
        ErrorCode::TooManyLogStreams,
    ];

    /// The code as it appears in JSON, e.g. `invalid_spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSpec => "invalid_spec",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NameMismatch => "name_mismatch",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StaleGeneration => "stale_generation",
            ErrorCode::Expired => "expired",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::EngineUnavailable => "engine_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooManyLogStreams => "too_many_log_streams",
        }
    }
}

/// A JSON error body: `{"code": "...", "message": "...", "field": "...", "fields": [...]}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
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
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
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
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSpec, message).with_fields(v.problems)
            }
            Error::Spec(SpecError::Invalid { source, .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSpec, message)
                    .with_fields(source.problems)
            }
            Error::Spec(SpecError::TooLarge { .. } | SpecError::SpecTooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge, message).with_field("body")
            }
            Error::Spec(ref spec) => {
                let field = spec.field().unwrap_or_else(|| "body".into());
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, message).with_field(field)
            }
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).with_field("name"),
            Error::StaleGeneration { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::StaleGeneration, message).with_field("generation")
            }
            Error::Conflict(ref m) => {
                let field = leading_field(m);
                ApiError {
                    field,
                    ..ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
                }
            }
            Error::Limit(ref m) => {
                let field = leading_field(m);
                ApiError {
                    field,
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::LimitExceeded, message)
                }
            }
            Error::Docker { .. } | Error::DockerTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::EngineUnavailable, message)
            }
            Error::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, message),
            Error::TooManyStreams(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyLogStreams, message)
                    .with_field("follow")
            }
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, message),
            Error::Expired(_) => ApiError::new(StatusCode::GONE, ErrorCode::Expired, message),
            Error::Store(_) | Error::Migrate(_) | Error::Corrupt { .. } => {
                // Details (paths, SQL) go to the log, not to the client.
                tracing::error!(error = %message, "store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the store could not complete the request; retry, and see the server log if it persists",
                )
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message),
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
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
    /// Caps on followed logs (`GET /v1/pods/{name}/logs?follow=true`).
    pub log_follows: FollowLimits,
}

/// The API as served: [`router`] behind authentication, a request deadline,
/// a body limit, and uniform JSON errors. No CORS layer: browsers on other
/// origins cannot read answers, and the token is not a cookie they could send.
pub fn app(orchestrator: Dubernetes, config: ApiConfig) -> Router {
    app_with_shutdown(orchestrator, config, CancellationToken::new())
}

/// [`app`], with a token that ends the long-lived streams (watch, followed
/// logs) when cancelled, so a graceful shutdown does not wait for them. The
/// request deadline bounds the time to the answer's head, not a stream's body.
pub fn app_with_shutdown(orchestrator: Dubernetes, config: ApiConfig, shutdown: CancellationToken) -> Router {
    let timeout = config.request_timeout;
    router_with_limits(orchestrator, shutdown, config.log_follows)
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

/// The generation a write is conditional on: `If-Match: "N"` or `?generation=N`.
fn expected_generation(headers: &HeaderMap, params: &WriteParams) -> Result<Option<i64>, ApiError> {
    let from_header = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => {
            let bad = || {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidHeader,
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
            ErrorCode::InvalidHeader,
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
            ErrorCode::BodyTooLarge
        } else {
            ErrorCode::InvalidBody
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
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only this pod's events.
    pub pod: Option<String>,
    /// At most this many (default 100, max 1000).
    pub limit: Option<u32>,
}

/// Query parameters of `GET /v1/watch`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// Resume after this version (the `id` of the last SSE message seen, or
    /// the `x-watch-version` header of a list). Without it (and without a
    /// `Last-Event-ID` header) the stream starts with every pod as `ADDED`.
    pub since: Option<u64>,
}

/// Query parameters of `GET /v1/pods/{name}/logs`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Keep streaming new lines.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of each replica.
    pub tail: Option<usize>,
    /// Only lines newer than this, e.g. `30s`, `5m`, `1h`.
    pub since: Option<String>,
}

/// The server's version.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// The server's version.
    pub server: String,
    /// The API version (`v1`).
    pub api: String,
    /// The instance name.
    pub instance: String,
    /// The Docker API version negotiated with the engine.
    pub docker_api: String,
    /// The absolute data dir of the store (null: in memory).
    pub data_dir: Option<String>,
    /// The store's id, the `io.dubernetes.store` label of every container it creates.
    pub store_id: String,
    /// Containers adopted with `--adopt-foreign` whose pod is not in the store
    /// (left alone until a pod of that name is applied).
    pub held_containers: usize,
    /// Containers of this instance seen since the start that belong to another store (left alone).
    pub foreign_containers: usize,
}

/// The state the handlers share.
#[derive(Clone)]
pub struct AppState {
    orchestrator: Dubernetes,
    /// Cancelled when the server shuts down: long-lived streams (watch,
    /// `logs?follow`) end so the graceful shutdown does not wait for them.
    shutdown: CancellationToken,
    /// Caps on followed logs, shared by every request.
    log_follows: FollowLimits,
}

impl FromRef<AppState> for Dubernetes {
    fn from_ref(state: &AppState) -> Dubernetes {
        state.orchestrator.clone()
    }
}

/// The OpenAPI document of the API, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dubernetes API",
        description = "Desired state in, running containers out. See docs/api.md."
    ),
    paths(
        healthz,
        version,
        list_pods,
        post_pod,
        get_pod,
        put_pod,
        delete_pod,
        revisions,
        rollback,
        events,
        ingress,
        watch,
        logs,
        openapi_json
    ),
    modifiers(&BearerAuth),
    components(schemas(
        ErrorCode,
        ApiError,
        ApplyResponse,
        VersionInfo,
        RollbackRequest,
        dubernetes_core::WatchEvent,
        dubernetes_core::LogLine
    ))
)]
pub struct ApiDoc;

/// Adds the bearer-token scheme every route but `/healthz` requires.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The OpenAPI document as pretty JSON (what `GET /v1/openapi.json` serves and `docs/openapi.json` holds).
pub fn openapi_document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The API's routes, without authentication: serve [`app`], not this.
pub fn router(orchestrator: Dubernetes) -> Router {
    router_with_shutdown(orchestrator, CancellationToken::new())
}

/// [`router`]; `shutdown` ends long-lived streams when cancelled.
pub fn router_with_shutdown(orchestrator: Dubernetes, shutdown: CancellationToken) -> Router {
    let log_follows = FollowLimits::new(DEFAULT_MAX_LOG_FOLLOWS, DEFAULT_MAX_LOG_FOLLOW_REPLICAS);
    router_with_limits(orchestrator, shutdown, log_follows)
}

/// [`router_with_shutdown`] with the given caps on followed logs.
pub fn router_with_limits(orchestrator: Dubernetes, shutdown: CancellationToken, log_follows: FollowLimits) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/version", get(version))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/pods", get(list_pods).post(post_pod))
        .route("/v1/pods/{name}", get(get_pod).put(put_pod).delete(delete_pod))
        .route("/v1/pods/{name}/revisions", get(revisions))
        .route("/v1/pods/{name}/rollback", axum::routing::post(rollback))
        .route("/v1/pods/{name}/logs", get(logs))
        .route("/v1/events", get(events))
        .route("/v1/watch", get(watch))
        .route("/v1/ingress", get(ingress))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NoSuchRoute,
                "no such API route; see docs/api.md",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState {
            orchestrator,
            shutdown,
            log_follows,
        })
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "The server runs")))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Versions of the server, the API and the engine.
#[utoipa::path(get, path = "/v1/version", tag = "server", security(("bearer" = [])), responses((status = 200, body = VersionInfo)))]
async fn version(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(VersionInfo {
        server: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        instance: o.instance().into(),
        docker_api: o.engine_api_version(),
        data_dir: o.data_dir().map(|d| d.display().to_string()),
        store_id: o.store_id().to_string(),
        held_containers: o.held_containers(),
        foreign_containers: o.foreign_containers(),
    })
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "server", security(("bearer" = [])), responses((status = 200, description = "The OpenAPI document")))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document())
}

/// The ingress: its host port, last error, and the pods whose routes nginx rejected.
#[utoipa::path(get, path = "/v1/ingress", tag = "server", security(("bearer" = [])), responses((status = 200, description = "`{port, error, reloads, rejected}`: `rejected` maps a pod to nginx's message")))]
async fn ingress(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "port": o.ingress_port().await,
        "error": o.ingress_error(),
        "reloads": o.ingress_reloads(),
        "rejected": o.ingress_rejections(),
    }))
}

fn version_header(version: u64) -> [(&'static str, HeaderValue); 1] {
    [("x-watch-version", HeaderValue::from(version))]
}

/// Every pod with its status and replicas. The `x-watch-version` header is
/// the change feed's version before the list was read: watch from it to see
/// every change after the list.
#[utoipa::path(get, path = "/v1/pods", tag = "pods", security(("bearer" = [])), responses(
    (status = 200, body = Vec<dubernetes_core::Pod>, headers(("x-watch-version" = u64, description = "watch from here"))),
    (status = 401, body = ApiError), (status = 503, body = ApiError)))]
async fn list_pods(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    let version = o.watch_version();
    Ok((version_header(version), axum::Json(o.list().await?)))
}

/// One pod; its generation is the `ETag` (for `If-Match`).
#[utoipa::path(get, path = "/v1/pods/{name}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = dubernetes_core::Pod, headers(("ETag" = String, description = "the generation, quoted"))),
        (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn get_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let version = o.watch_version();
    let pod = o.get(&name).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", pod.generation)).ok();
    let mut response = (version_header(version), axum::Json(pod)).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Deletes a pod: its containers are removed and its route dropped.
/// Conditional on `If-Match: "N"` or `?generation=N` when given.
#[utoipa::path(delete, path = "/v1/pods/{name}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name"), WriteParams),
    responses((status = 200, description = "`{deleted: name}`"), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "stale_generation")))]
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

/// A pod's revisions, oldest first.
#[utoipa::path(get, path = "/v1/pods/{name}/revisions", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = Vec<dubernetes_core::Revision>), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
async fn revisions(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.history(&name).await?))
}

/// Body of `POST /v1/pods/{name}/rollback`.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision to go back to; default: the one before the current.
    #[serde(default)]
    pub to_revision: Option<i64>,
}

/// Rolls a pod back to an earlier revision (by default the previous one).
#[utoipa::path(post, path = "/v1/pods/{name}/rollback", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    request_body(content = Option<RollbackRequest>, description = "optional; empty body = previous revision"),
    responses((status = 200, body = ApplyResponse), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)))]
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
                ErrorCode::InvalidBody,
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

/// Recent events, oldest first. `x-watch-version` as for `GET /v1/pods`.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])), params(EventParams),
    responses((status = 200, body = Vec<dubernetes_core::Event>), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
async fn events(State(o): State<Dubernetes>, Query(q): Query<EventParams>) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let version = o.watch_version();
    Ok((
        version_header(version),
        axum::Json(o.events(q.pod.as_deref(), limit).await?),
    ))
}

/// The change feed as Server-Sent Events: one message per change, `id` = its
/// version, `event` = `ADDED`, `MODIFIED`, `DELETED` or `EVENT`, `data` = a
/// [`dubernetes_core::WatchEvent`] as JSON. Resume with `?since=` or the
/// `Last-Event-ID` header. A version the feed no longer holds is answered
/// with 410 `expired`; a watcher that falls behind gets an `error` message
/// with code `expired` and the stream ends.
#[utoipa::path(get, path = "/v1/watch", tag = "watch", security(("bearer" = [])), params(WatchParams),
    responses(
        (status = 200, description = "text/event-stream of WatchEvent", content_type = "text/event-stream", body = dubernetes_core::WatchEvent),
        (status = 410, body = ApiError, description = "the version is no longer in the feed: list again")))]
async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WatchParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let since = q.since.or(last_event_id);
    let feed = state.orchestrator.watch_from(since)?;
    let stream = feed
        .map(|item| {
            Ok(match item {
                Ok(change) => {
                    let kind = serde_json::to_value(change.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "MODIFIED".into());
                    let data = serde_json::to_string(&change).unwrap_or_else(|_| "{}".into());
                    SseEvent::default()
                        .id(change.version.to_string())
                        .event(kind)
                        .data(data)
                }
                Err(e) => {
                    let body = ApiError::from(e);
                    SseEvent::default()
                        .event("error")
                        .data(serde_json::to_string(&body).unwrap_or_else(|_| "{}".into()))
                }
            })
        })
        .take_until(state.shutdown.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A pod's logs: every replica's, interleaved as lines arrive, as
/// newline-delimited JSON ([`dubernetes_core::LogLine`] per line). With
/// `follow`, the response goes on until the replicas stop or the client goes
/// away. A failure mid-stream is a last line with `code` and `message`.
/// Lines longer than 16 KiB are cut there and carry `"truncated": true`.
/// A followed read holds one place per replica in `--max-log-follows`
/// (503 `too_many_log_streams` when they are taken) and may read at most
/// `--max-log-follow-replicas` replicas (422 `limit_exceeded`, field `follow`).
/// The answer is produced as the client reads it: a slow client slows the
/// engine's log stream, nothing is buffered ahead.
#[utoipa::path(get, path = "/v1/pods/{name}/logs", tag = "pods", security(("bearer" = [])), params(("name" = String, Path, description = "pod name"), LogParams),
    responses(
        (status = 200, description = "application/x-ndjson of LogLine", content_type = "application/x-ndjson", body = dubernetes_core::LogLine),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError), (status = 503, body = ApiError)))]
async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogParams>,
) -> Result<Response, ApiError> {
    let mut options = LogOptions::new().follow(q.follow).limits(state.log_follows.clone());
    if let Some(tail) = q.tail {
        options = options.tail(tail);
    }
    if let Some(since) = q.since.as_deref() {
        let ago = humantime::parse_duration(since).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                format!("since: {since:?} is not a duration like 30s, 5m or 1h ({e})"),
            )
        })?;
        options = options.since(ago);
    }
    let lines = state.orchestrator.logs(&name, options).await?;
    let body = lines
        .map(|item| {
            let mut line = match item {
                Ok(line) => serde_json::to_vec(&line),
                Err(e) => serde_json::to_vec(&ApiError::from(e)),
            }
            .unwrap_or_default();
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        })
        .take_until(state.shutdown.cancelled_owned());
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
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
            ErrorCode::EmptyBody,
            "the request body is empty; send a pod spec as JSON or YAML",
        )
        .with_field("body"));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
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
                    ErrorCode::InvalidSpec,
                    format!("expected exactly one pod spec, got {}", specs.len()),
                )
                .with_field("body"));
            }
            Ok(specs.remove(0))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
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

/// Creates or updates the pod of that name (idempotent). The body is a pod
/// spec as JSON or YAML (by `Content-Type`). `?dry_run=true` validates on the
/// server and stores nothing; `If-Match: "N"` or `?generation=N` makes the
/// write conditional on the pod's generation.
#[utoipa::path(put, path = "/v1/pods/{name}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name"), WriteParams),
    request_body(content = PodSpec, content_type = "application/json"),
    responses((status = 200, body = ApplyResponse, description = "configured or unchanged"), (status = 201, body = ApplyResponse, description = "created"),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 409, body = ApiError), (status = 413, body = ApiError),
        (status = 415, body = ApiError), (status = 422, body = ApiError)))]
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
            ErrorCode::NameMismatch,
            format!(
                "name: the body names pod {:?} but the path names {name:?}; make them the same",
                spec.name
            ),
        )
        .with_field("name"));
    }
    apply(&o, spec, params, &headers).await
}

/// Creates or updates the pod named in the body; as `PUT /v1/pods/{name}`.
#[utoipa::path(post, path = "/v1/pods", tag = "pods", security(("bearer" = [])), params(WriteParams),
    request_body(content = PodSpec, content_type = "application/json"),
    responses((status = 200, body = ApplyResponse, description = "configured or unchanged"), (status = 201, body = ApplyResponse, description = "created"),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 409, body = ApiError), (status = 413, body = ApiError),
        (status = 415, body = ApiError), (status = 422, body = ApiError)))]
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
