//! The HTTP API of Dubernetes: a thin axum layer over [`dubernetes_core::Dubernetes`].
//!
//! Every handler validates, calls the core, and maps its errors to a JSON body
//! with a stable `code` and a human `message`. Bad input is a 4xx and changes nothing.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dubernetes_core::{ApplyOutcome, Dubernetes, Error, FieldError, PodSpec, SpecError};
use serde::{Deserialize, Serialize};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON error body: `{"code": "...", "message": "...", "fields": [...]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable code.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
    /// Invalid fields, for validation errors.
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
            fields: Vec::new(),
            status: status.as_u16(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Invalid(v) => ApiError {
                fields: v.problems,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message)
            },
            Error::Spec(SpecError::Invalid { source, .. }) => ApiError {
                fields: source.problems,
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", message)
            },
            Error::Spec(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_spec", message),
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            Error::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            Error::Limit(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded", message),
            Error::Docker { .. } | Error::DockerTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable", message)
            }
            Error::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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

/// Builds the API router.
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

async fn get_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.get(&name).await?))
}

async fn delete_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    o.delete(&name).await?;
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

async fn rollback(State(o): State<Dubernetes>, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
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
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body is not valid UTF-8",
        )
    })?;
    match essence.as_str() {
        "application/json" => serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("invalid JSON pod spec: {e}"),
            )
        }),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let mut specs = dubernetes_core::parse_specs(text).map_err(|e| ApiError::from(Error::Spec(e)))?;
            if specs.len() != 1 {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_spec",
                    format!("expected exactly one pod spec, got {}", specs.len()),
                ));
            }
            Ok(specs.remove(0))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
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

async fn put_pod(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = decode_spec(&headers, &body)?;
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name_mismatch",
            format!(
                "name: the body names pod {:?} but the path names {name:?}; make them the same",
                spec.name
            ),
        ));
    }
    apply(&o, spec, params).await
}

async fn post_pod(
    State(o): State<Dubernetes>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = decode_spec(&headers, &body)?;
    apply(&o, spec, params).await
}
