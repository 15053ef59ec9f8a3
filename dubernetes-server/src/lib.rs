//! The HTTP API of Dubernetes: a thin axum layer over [`dubernetes_core::Dubernetes`].
//!
//! Every handler validates, calls the core, and maps its errors to a JSON body
//! with a stable `code` and a human `message`. Bad input is a 4xx and changes nothing.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dubernetes_core::{ApplyOutcome, Dubernetes, Error, FieldError, LogOptions, PodSpec, SpecError};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The stable, machine-readable codes of error bodies. Clients match on
/// these, never on messages; every one is documented in `docs/api.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The pod spec is invalid (`fields` says which field and why).
    InvalidSpec,
    /// The request body is not what the route expects.
    InvalidBody,
    /// The request body is empty.
    EmptyBody,
    /// A query parameter is invalid.
    InvalidQuery,
    /// The name in the body differs from the one in the path.
    NameMismatch,
    /// The pod does not exist.
    NotFound,
    /// The request conflicts with the current state (e.g. the host is taken).
    Conflict,
    /// A limit of the instance was reached.
    LimitExceeded,
    /// The Docker engine could not be reached or refused a call.
    EngineUnavailable,
    /// A wait did not finish in time.
    Timeout,
    /// The server is shutting down.
    ShuttingDown,
    /// A watch asked for a version the change feed no longer holds (HTTP 410).
    Expired,
    /// The content type is neither JSON nor YAML.
    UnsupportedMediaType,
    /// No such API route.
    NoSuchRoute,
    /// Anything else; the message says what.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation checks.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidSpec,
        ErrorCode::InvalidBody,
        ErrorCode::EmptyBody,
        ErrorCode::InvalidQuery,
        ErrorCode::NameMismatch,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::LimitExceeded,
        ErrorCode::EngineUnavailable,
        ErrorCode::Timeout,
        ErrorCode::ShuttingDown,
        ErrorCode::Expired,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::NoSuchRoute,
        ErrorCode::Internal,
    ];

    /// The code as it appears in JSON, e.g. `invalid_spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSpec => "invalid_spec",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::NameMismatch => "name_mismatch",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::EngineUnavailable => "engine_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Expired => "expired",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::Internal => "internal",
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
    /// The first invalid field, for validation errors (e.g. `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every invalid field, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
            status: status.as_u16(),
        }
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
            Error::Spec(_) => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, message),
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message),
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message),
            Error::Limit(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::LimitExceeded, message),
            Error::Docker { .. } | Error::DockerTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::EngineUnavailable, message)
            }
            Error::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, message),
            Error::Expired(_) => ApiError::new(StatusCode::GONE, ErrorCode::Expired, message),
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuery,
            format!("{}; see docs/api.md for the parameters of this route", e.body_text()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self)).into_response()
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
    /// The pod after the apply (on dry runs: the pod as stored now, absent for new pods).
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
}

/// The state the handlers share.
#[derive(Clone)]
pub struct AppState {
    orchestrator: Dubernetes,
    /// Cancelled when the server shuts down: long-lived streams (watch,
    /// `logs?follow`) end so the graceful shutdown does not wait for them.
    shutdown: CancellationToken,
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

/// The OpenAPI document as pretty JSON (what `GET /v1/openapi.json` serves and `docs/openapi.json` holds).
pub fn openapi_document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// Builds the API router.
pub fn router(orchestrator: Dubernetes) -> Router {
    router_with_shutdown(orchestrator, CancellationToken::new())
}

/// Builds the API router; `shutdown` ends long-lived streams when cancelled.
pub fn router_with_shutdown(orchestrator: Dubernetes, shutdown: CancellationToken) -> Router {
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
        .with_state(AppState { orchestrator, shutdown })
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "The server runs")))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Versions of the server, the API and the engine.
#[utoipa::path(get, path = "/v1/version", tag = "server", responses((status = 200, body = VersionInfo)))]
async fn version(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(VersionInfo {
        server: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        instance: o.instance().into(),
        docker_api: o.engine_api_version(),
    })
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "server", responses((status = 200, description = "The OpenAPI document")))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document())
}

/// The ingress: its host port and last error.
#[utoipa::path(get, path = "/v1/ingress", tag = "server", responses((status = 200, description = "`{port, error}`")))]
async fn ingress(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "port": o.ingress_port().await, "error": o.ingress_error() }))
}

fn version_header(version: u64) -> [(&'static str, HeaderValue); 1] {
    [("x-watch-version", HeaderValue::from(version))]
}

/// Every pod with its status and replicas. The `x-watch-version` header is
/// the change feed's version before the list was read: watch from it to see
/// every change after the list.
#[utoipa::path(get, path = "/v1/pods", tag = "pods", responses(
    (status = 200, body = Vec<dubernetes_core::Pod>, headers(("x-watch-version" = u64, description = "watch from here"))),
    (status = 503, body = ApiError)))]
async fn list_pods(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    let version = o.watch_version();
    Ok((version_header(version), axum::Json(o.list().await?)))
}

/// One pod.
#[utoipa::path(get, path = "/v1/pods/{name}", tag = "pods", params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = dubernetes_core::Pod), (status = 404, body = ApiError)))]
async fn get_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let version = o.watch_version();
    Ok((version_header(version), axum::Json(o.get(&name).await?)))
}

/// Deletes a pod: its containers are removed and its route dropped.
#[utoipa::path(delete, path = "/v1/pods/{name}", tag = "pods", params(("name" = String, Path, description = "pod name")),
    responses((status = 200, description = "`{deleted: name}`"), (status = 404, body = ApiError)))]
async fn delete_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    o.delete(&name).await?;
    Ok(axum::Json(serde_json::json!({"deleted": name})))
}

/// A pod's revisions, oldest first.
#[utoipa::path(get, path = "/v1/pods/{name}/revisions", tag = "pods", params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = Vec<dubernetes_core::Revision>), (status = 404, body = ApiError)))]
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
#[utoipa::path(post, path = "/v1/pods/{name}/rollback", tag = "pods", params(("name" = String, Path, description = "pod name")),
    request_body(content = Option<RollbackRequest>, description = "optional; empty body = previous revision"),
    responses((status = 200, body = ApplyResponse), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn rollback(State(o): State<Dubernetes>, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                format!("invalid rollback request: {e}"),
            )
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
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = Vec<dubernetes_core::Event>), (status = 400, body = ApiError)))]
async fn events(
    State(o): State<Dubernetes>,
    q: Result<Query<EventParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q?;
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
#[utoipa::path(get, path = "/v1/watch", tag = "watch", params(WatchParams),
    responses(
        (status = 200, description = "text/event-stream of WatchEvent", content_type = "text/event-stream", body = dubernetes_core::WatchEvent),
        (status = 410, body = ApiError, description = "the version is no longer in the feed: list again")))]
async fn watch(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WatchParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = q?;
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
#[utoipa::path(get, path = "/v1/pods/{name}/logs", tag = "pods", params(("name" = String, Path, description = "pod name"), LogParams),
    responses(
        (status = 200, description = "application/x-ndjson of LogLine", content_type = "application/x-ndjson", body = dubernetes_core::LogLine),
        (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let mut options = LogOptions::new().follow(q.follow);
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
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            "the request body is not valid UTF-8",
        )
    })?;
    match essence.as_str() {
        "application/json" => serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidSpec,
                format!("invalid JSON pod spec: {e}"),
            )
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let mut specs = dubernetes_core::parse_specs(text).map_err(|e| ApiError::from(Error::Spec(e)))?;
            if specs.len() != 1 {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidSpec,
                    format!("expected exactly one pod spec, got {}", specs.len()),
                ));
            }
            Ok(specs.remove(0))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("content type {content_type:?} is not supported; send application/json or application/yaml"),
        )),
    }
}

async fn apply(o: &Dubernetes, spec: PodSpec, params: WriteParams) -> Result<Response, ApiError> {
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
    let (pod, outcome) = o.apply(spec).await?;
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
/// server and stores nothing.
#[utoipa::path(put, path = "/v1/pods/{name}", tag = "pods", params(("name" = String, Path, description = "pod name"), WriteParams),
    request_body(content = PodSpec, content_type = "application/json"),
    responses((status = 200, body = ApplyResponse, description = "configured or unchanged"), (status = 201, body = ApplyResponse, description = "created"),
        (status = 400, body = ApiError), (status = 409, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)))]
async fn put_pod(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    params: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let spec = decode_spec(&headers, &body)?;
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameMismatch,
            format!(
                "name: the body names pod {:?} but the path names {name:?}; make them the same",
                spec.name
            ),
        ));
    }
    apply(&o, spec, params).await
}

/// Creates or updates the pod named in the body; as `PUT /v1/pods/{name}`.
#[utoipa::path(post, path = "/v1/pods", tag = "pods", params(WriteParams),
    request_body(content = PodSpec, content_type = "application/json"),
    responses((status = 200, body = ApplyResponse, description = "configured or unchanged"), (status = 201, body = ApplyResponse, description = "created"),
        (status = 400, body = ApiError), (status = 409, body = ApiError), (status = 415, body = ApiError), (status = 422, body = ApiError)))]
async fn post_pod(
    State(o): State<Dubernetes>,
    params: Result<Query<WriteParams>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let spec = decode_spec(&headers, &body)?;
    apply(&o, spec, params).await
}
