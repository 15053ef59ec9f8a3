//! The change feed as Server-Sent Events, resumable by version.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use dubernetes_core::StreamKind;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::AppState;
use crate::error::ApiError;

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
pub(crate) async fn watch(
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
    // Counted as open while the stream lives.
    let open = state.orchestrator.metrics().stream_open(StreamKind::Watch);
    let stream = feed
        .map(move |item| {
            let _open = &open;
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
