//! Named volumes: list them, delete one no pod mounts. They are made when a
//! replica first mounts one and never deleted with a pod.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use dubernetes_core::Dubernetes;

use crate::error::ApiError;

/// Every named volume of the instance this server's store made, with the
/// pods that mount it and its size where the engine knows it.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", security(("bearer" = [])), responses(
    (status = 200, body = Vec<dubernetes_core::NamedVolume>), (status = 401, body = ApiError),
    (status = 503, body = ApiError, description = "engine_unavailable")))]
pub(crate) async fn list_volumes(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.volumes().await?))
}

/// Deletes a named volume and its data: 409 `conflict` while a pod mounts it
/// (or when the engine's volume of that name is not this store's: it is left alone).
#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes", security(("bearer" = [])),
    params(("name" = String, Path, description = "volume name, as pods give it")),
    responses((status = 200, description = "`{deleted: name}`"), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "in use by pods, or not this store's"),
        (status = 503, body = ApiError, description = "engine_unavailable")))]
pub(crate) async fn delete_volume(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    o.delete_volume(&name).await?;
    Ok(axum::Json(serde_json::json!({"deleted": name})))
}
