//! The server itself: liveness, versions, the ingress (the OpenAPI document
//! is served by `crate::openapi::openapi_json`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use dubernetes_core::Dubernetes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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
    /// The backend: `docker` (one engine) or `swarm` (a Docker Swarm through one of its managers).
    pub backend: String,
    /// The absolute data dir of the store (null: in memory).
    pub data_dir: Option<String>,
    /// The store's id, the `io.dubernetes.store` label of every container it creates.
    pub store_id: String,
    /// Containers adopted with `--adopt-foreign` whose pod is not in the store
    /// (left alone until a pod of that name is applied).
    pub held_containers: usize,
    /// Containers of this instance seen since the start that belong to another store (left alone).
    pub foreign_containers: usize,
    /// The kind of store: `sqlite` (one server) or `postgres` (shared by the servers of the instance).
    pub store: String,
    /// Whether this server leads its instance (acts on the engine); always true with SQLite.
    pub leader: bool,
}

/// Liveness, and whether this server leads its instance.
#[utoipa::path(get, path = "/healthz", tag = "server", responses((status = 200, description = "The server runs: `{\"status\": \"ok\", \"leader\": true|false}`; `leader`: this server acts on the engine (always true with SQLite)")))]
pub(crate) async fn healthz(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok", "leader": o.is_leader()}))
}

/// Versions of the server, the API and the engine.
#[utoipa::path(get, path = "/v1/version", tag = "server", security(("bearer" = [])), responses((status = 200, body = VersionInfo)))]
pub(crate) async fn version(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(VersionInfo {
        server: env!("CARGO_PKG_VERSION").into(),
        api: "v1".into(),
        instance: o.instance().into(),
        docker_api: o.engine_api_version(),
        backend: o.backend().to_string(),
        data_dir: o.data_dir().map(|d| d.display().to_string()),
        store_id: o.store_id().to_string(),
        held_containers: o.diagnostics().held_containers(),
        foreign_containers: o.diagnostics().foreign_containers(),
        store: o.store_kind().into(),
        leader: o.is_leader(),
    })
}

/// Every metric in the Prometheus text format (0.0.4); see docs/metrics.md.
/// Scrape it with the API token (Prometheus' `authorization` setting).
#[utoipa::path(get, path = "/metrics", tag = "server", security(("bearer" = [])),
    responses(
        (status = 200, description = "The Prometheus text exposition", content_type = "text/plain", body = String),
        (status = 401, body = ApiError, description = "missing or wrong API token")))]
pub(crate) async fn metrics(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    let text = o.metrics_text().await?;
    Ok((
        [(header::CONTENT_TYPE, dubernetes_core::protocol::METRICS_CONTENT_TYPE)],
        text,
    ))
}

/// The ingress: its host port, last error, and the pods whose routes nginx rejected.
#[utoipa::path(get, path = "/v1/ingress", tag = "server", security(("bearer" = [])), responses((status = 200, description = "`{port, tls_port, error, reloads, endpoint_updates, endpoints, rejected}`: `tls_port` is HTTPS's host port (null: none), `reloads` counts configs made live, `endpoint_updates` replica changes applied without a reload, `endpoints` is `bound` (files renamed in a host directory bound into the ingress) or `archive` (written through the engine's archive API), `rejected` maps a pod to nginx's message, `listeners` lists the TCP listeners of pods' `expose` (`{listen, pod, port, serving, container, error}`: `container` is the running container's id, `error` says why one is not serving)")))]
pub(crate) async fn ingress(State(o): State<Dubernetes>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "port": o.ingress_port().await,
        "tls_port": o.ingress_tls_port().await,
        "error": o.diagnostics().ingress_error(),
        "reloads": o.diagnostics().ingress_reloads(),
        "endpoint_updates": o.diagnostics().ingress_endpoint_updates(),
        "endpoints": if o.diagnostics().ingress_endpoints_bound() { "bound" } else { "archive" },
        "rejected": o.diagnostics().ingress_rejections(),
        "listeners": o.diagnostics().ingress_listeners().iter().map(|l| serde_json::json!({
            "listen": l.listen,
            "pod": l.pod,
            "port": l.port,
            "serving": l.serving,
            "container": l.container,
            "error": l.error,
        })).collect::<Vec<_>>(),
    }))
}
