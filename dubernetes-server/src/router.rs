//! The API's paths: every handler of [`crate::routes`] and the OpenAPI
//! document ([`crate::openapi`]) on its route. Above both, so neither
//! imports the other's side.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use dubernetes_core::defaults::DEFAULT_MAX_LOG_FOLLOW_REPLICAS;
use dubernetes_core::defaults::DEFAULT_MAX_LOG_FOLLOWS;
use dubernetes_core::{Dubernetes, FollowLimits};
use tokio_util::sync::CancellationToken;

use crate::MAX_BODY_BYTES;
use crate::error::{ApiError, ErrorCode};
use crate::openapi::openapi_json;
use crate::routes::events::events;
use crate::routes::logs::logs;
use crate::routes::meta::{healthz, ingress, metrics, version};
use crate::routes::pods::{delete_pod, get_pod, list_pods, post_pod, put_pod, revisions, rollback};
use crate::routes::secrets::{delete_secret, get_secret, list_secrets, post_secret, put_secret};
use crate::routes::volumes::{delete_volume, list_volumes};
use crate::routes::watch::watch;
use crate::routes::{AppState, exec, nodes, runs};

/// The API's routes, without authentication: serve [`app`](crate::app), not this.
pub fn router(orchestrator: Dubernetes) -> Router {
    router_with_shutdown(orchestrator, CancellationToken::new())
}

/// [`router`]; `shutdown` ends long-lived streams when cancelled.
pub fn router_with_shutdown(orchestrator: Dubernetes, shutdown: CancellationToken) -> Router {
    let log_follows = FollowLimits::new(DEFAULT_MAX_LOG_FOLLOWS, DEFAULT_MAX_LOG_FOLLOW_REPLICAS);
    router_with_limits(orchestrator, shutdown, log_follows)
}

/// [`router_with_shutdown`] with the given caps on followed logs.
pub fn router_with_limits(orchestrator: Dubernetes, shutdown: CancellationToken, log_follows: FollowLimits) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/version", get(version))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/pods", get(list_pods).post(post_pod))
        .route("/v1/pods/{name}", get(get_pod).put(put_pod).delete(delete_pod))
        .route("/v1/pods/{name}/revisions", get(revisions))
        .route("/v1/pods/{name}/rollback", axum::routing::post(rollback))
        .route("/v1/pods/{name}/logs", get(logs))
        .route("/v1/pods/{name}/exec", axum::routing::post(exec::exec))
        .route("/v1/pods/{name}/runs", get(runs::list_runs).post(runs::post_run))
        .route(
            "/v1/pods/{name}/runs/{run}",
            get(runs::get_run).delete(runs::delete_run),
        )
        .route("/v1/secrets", get(list_secrets).post(post_secret))
        .route(
            "/v1/secrets/{name}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
        .route("/v1/nodes", get(nodes::list_nodes))
        .route("/v1/volumes", get(list_volumes))
        .route("/v1/volumes/{name}", axum::routing::delete(delete_volume))
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
        .with_state(AppState {
            orchestrator,
            shutdown,
            log_follows,
        })
}
