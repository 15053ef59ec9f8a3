//! The nodes that run replicas (`dubectl get nodes`).

use axum::extract::State;
use axum::response::IntoResponse;
use dubernetes_core::Dubernetes;

use crate::error::ApiError;

/// The nodes (the swarm's, or the docker backend's one engine), the
/// managers first: id, host name, role, state, availability, labels and the
/// instance's running replicas on each, by pod.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", security(("bearer" = [])), responses(
    (status = 200, body = Vec<dubernetes_core::dubernetes_api::Node>), (status = 401, body = ApiError),
    (status = 503, body = ApiError, description = "engine_unavailable")))]
pub(crate) async fn list_nodes(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.nodes().await?))
}
