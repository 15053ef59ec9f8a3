//! The event log: what the controller did and why.

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use dubernetes_core::Dubernetes;
use serde::Deserialize;

use super::version_header;
use crate::error::ApiError;

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

/// Recent events, oldest first. `x-watch-version` as for `GET /v1/pods`.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])), params(EventParams),
    responses((status = 200, body = Vec<dubernetes_core::Event>), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub(crate) async fn events(
    State(o): State<Dubernetes>,
    Query(q): Query<EventParams>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let version = o.watch_version();
    Ok((
        version_header(version),
        axum::Json(o.events(q.pod.as_deref(), limit).await?),
    ))
}
