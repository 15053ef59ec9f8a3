//! One-off runs of a pod's current revision (`dubectl run`).

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dubernetes_core::dubernetes_api::{Run, RunExit, RunRequest};
use dubernetes_core::{Dubernetes, RunItem};
use futures::StreamExt;

use super::AppState;
use crate::error::ApiError;

/// Starts a one-off run of the pod's current revision: its image, env and
/// secrets, volumes, network and limits, with `command` in place of the
/// pod's `command` and `args`; no ingress, not a replica. With `detach`, 201
/// and the run at once (its log: `GET /v1/pods/{name}/logs?run=NAME`; it is
/// removed `--run-retention` after it exits). Without, 200 and its output as
/// newline-delimited `LogLine`s, then one `RunExit` line; the container is
/// removed then, or (killed) when the client goes away. More than
/// `--max-runs` runs of the instance at once: 429 `limit_exceeded` (field `runs`).
#[utoipa::path(post, path = "/v1/pods/{name}/runs", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    request_body = RunRequest,
    responses(
        (status = 200, description = "application/x-ndjson: LogLine per output line, then one RunExit", content_type = "application/x-ndjson", body = RunExit),
        (status = 201, body = Run, description = "detached: the run"),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 413, body = ApiError),
        (status = 409, body = ApiError, description = "image_pull_failed: the image is not present and cannot be pulled"),
        (status = 415, body = ApiError), (status = 422, body = ApiError), (status = 429, body = ApiError),
        (status = 502, body = ApiError, description = "image_pull_failed: the registry could not be reached"),
        (status = 503, body = ApiError)))]
pub(crate) async fn post_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<RunRequest>,
) -> Result<Response, ApiError> {
    if body.detach {
        let (run, _) = state.orchestrator.start_run(&name, body.command).await?;
        return Ok((StatusCode::CREATED, Json(run)).into_response());
    }
    let items = state.orchestrator.run_attached(&name, body.command).await?;
    let lines = items.map(|item| {
        let mut line = match item {
            Ok(RunItem::Line(line)) => serde_json::to_vec(&line),
            Ok(RunItem::Exit(exit)) => serde_json::to_vec(&exit),
            Err(e) => serde_json::to_vec(&ApiError::from(e)),
        }
        .unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    // A shutdown ends the stream: the run is removed as when the client goes.
    let lines = lines.take_until(state.shutdown.cancelled_owned());
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// A pod's runs, newest first (exited ones until they are removed).
#[utoipa::path(get, path = "/v1/pods/{name}/runs", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    responses((status = 200, body = Vec<Run>), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 503, body = ApiError)))]
pub(crate) async fn list_runs(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Run>>, ApiError> {
    Ok(Json(o.runs(&name).await?))
}

/// One run, with its exit code once it has exited.
#[utoipa::path(get, path = "/v1/pods/{name}/runs/{run}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name"), ("run" = String, Path, description = "run name")),
    responses((status = 200, body = Run), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 503, body = ApiError)))]
pub(crate) async fn get_run(
    State(o): State<Dubernetes>,
    Path((name, run)): Path<(String, String)>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(o.run(&name, &run).await?))
}

/// Removes a run, killing it if it runs.
#[utoipa::path(delete, path = "/v1/pods/{name}/runs/{run}", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name"), ("run" = String, Path, description = "run name")),
    responses((status = 200, description = "`{deleted: run}`"), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 503, body = ApiError)))]
pub(crate) async fn delete_run(
    State(o): State<Dubernetes>,
    Path((name, run)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    o.delete_run(&name, &run).await?;
    Ok(Json(serde_json::json!({ "deleted": run })))
}
