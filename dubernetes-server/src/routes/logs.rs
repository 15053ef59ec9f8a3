//! A pod's logs as newline-delimited JSON, followed or not, within the
//! server's caps on followed streams.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dubernetes_core::{LogOptions, StreamKind};
use futures::StreamExt;
use serde::Deserialize;

use super::AppState;
use crate::error::{ApiError, ErrorCode};

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
    /// Only this one-off run's lines (`dubectl run --detach` names it); without, runs are included.
    pub run: Option<String>,
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
pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogParams>,
) -> Result<Response, ApiError> {
    let mut options = LogOptions::new().follow(q.follow).limits(state.log_follows.clone());
    if let Some(tail) = q.tail {
        options = options.tail(tail);
    }
    if let Some(since) = q.since.as_deref() {
        let ago = dubernetes_core::dubernetes_api::spec::parse_duration(since).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery, format!("since: {e}")).with_field("since")
        })?;
        options = options.since(ago);
    }
    if let Some(run) = q.run.as_deref() {
        options = options.run(run);
    }
    let lines = state.orchestrator.logs(&name, options).await?;
    // Counted as open while the body lives (a followed one until the client goes).
    let open = q
        .follow
        .then(|| state.orchestrator.metrics().stream_open(StreamKind::Logs));
    let body = lines
        .map(move |item| {
            let _open = &open;
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
