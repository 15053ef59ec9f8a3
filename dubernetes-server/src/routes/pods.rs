//! Pods: list, read, apply (create or update, from JSON or YAML), delete,
//! revisions and rollback. Writes are conditional on a generation when the
//! client sends one (`If-Match: "N"` or `?generation=N`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dubernetes_core::{ApplyOutcome, Dubernetes, Error, PodSpec};
use serde::{Deserialize, Serialize};

use super::version_header;
use crate::MAX_BODY_BYTES;
use crate::error::{ApiError, ErrorCode};

pub use dubernetes_core::ApplyResponse;

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

/// Query parameters of `GET /v1/pods`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Include each pod's `replicas` (per-container detail). Without it the
    /// list is lighter: `replicas` is empty, the status (counts, phase,
    /// conditions) is complete. `GET /v1/pods/{name}` always has them.
    #[serde(default)]
    pub replicas: bool,
}

/// The generation a write is conditional on: `If-Match: "N"` or `?generation=N`.
pub(crate) fn expected_generation(headers: &HeaderMap, params: &WriteParams) -> Result<Option<i64>, ApiError> {
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
pub(crate) fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
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

/// Every pod with its status; with `?replicas=true` its replicas too. The
/// `x-watch-version` header is the change feed's version before the list was
/// read: watch from it to see every change after the list.
#[utoipa::path(get, path = "/v1/pods", tag = "pods", security(("bearer" = [])), params(ListParams), responses(
    (status = 200, body = Vec<dubernetes_core::Pod>, headers(("x-watch-version" = u64, description = "watch from here"))),
    (status = 401, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn list_pods(
    State(o): State<Dubernetes>,
    Query(params): Query<ListParams>,
) -> Result<impl IntoResponse, ApiError> {
    let version = o.watch_version();
    let mut pods = o.list().await?;
    if !params.replicas {
        for pod in &mut pods {
            pod.replicas = Vec::new();
        }
    }
    Ok((version_header(version), axum::Json(pods)))
}

/// One pod; its generation is the `ETag` (for `If-Match`).
#[utoipa::path(get, path = "/v1/pods/{name}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = dubernetes_core::Pod, headers(("ETag" = String, description = "the generation, quoted"))),
        (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_pod(State(o): State<Dubernetes>, Path(name): Path<String>) -> Result<Response, ApiError> {
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
pub(crate) async fn delete_pod(
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
pub(crate) async fn revisions(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
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
pub(crate) async fn rollback(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let request: RollbackRequest = if body.is_empty() {
        RollbackRequest::default()
    } else {
        let invalid = |e: serde_json::Error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidBody,
                format!("invalid rollback request: {e}"),
            )
            .with_field("body")
        };
        // `{"to_revision": 3.0}` is the integer 3, as the OpenAPI document counts it.
        let mut value: serde_json::Value = serde_json::from_slice(&body).map_err(invalid)?;
        dubernetes_core::integral_numbers(&mut value);
        serde_json::from_value(value).map_err(invalid)?
    };
    let (pod, outcome) = o.undo(&name, request.to_revision).await?;
    let warnings = pod.spec.warnings();
    Ok(axum::Json(ApplyResponse {
        outcome,
        dry_run: false,
        pod: Some(pod),
        warnings,
    })
    .into_response())
}

/// Reads a spec from JSON or YAML, by content type.
pub(crate) fn decode_spec(headers: &HeaderMap, body: &Bytes) -> Result<PodSpec, ApiError> {
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

pub(crate) async fn apply(
    o: &Dubernetes,
    spec: PodSpec,
    params: WriteParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let expected = expected_generation(headers, &params)?;
    let warnings = spec.warnings();
    if params.dry_run {
        let outcome = o.dry_run(&spec).await?;
        let pod = o.get(&spec.name).await.ok();
        return Ok(axum::Json(ApplyResponse {
            outcome,
            dry_run: true,
            pod,
            warnings,
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
            warnings,
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
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError, description = "a conditional write (`If-Match` or `generation`) to a pod that does not exist"),
        (status = 409, body = ApiError), (status = 413, body = ApiError),
        (status = 415, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn put_pod(
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
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 404, body = ApiError, description = "a conditional write (`If-Match` or `generation`) to a pod that does not exist"),
        (status = 409, body = ApiError), (status = 413, body = ApiError),
        (status = 415, body = ApiError), (status = 422, body = ApiError)))]
pub(crate) async fn post_pod(
    State(o): State<Dubernetes>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let spec = decode_spec(&headers, &body)?;
    apply(&o, spec, params, &headers).await
}
