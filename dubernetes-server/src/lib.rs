//! The HTTP API of Dubernetes: a thin axum layer over [`dubernetes_core::Dubernetes`].
//!
//! Every handler validates, calls the core, and maps its errors to a JSON body
//! with a stable `code`, a human `message` and, for bad input, the `field`.
//! Bad input is a 4xx and changes nothing.
//!
//! [`app`] is what a server serves: the routes of [`router`] behind bearer-token
//! authentication (`GET /healthz` excepted), a per-request timeout, a body size
//! limit, and a layer that turns every rejection into the same JSON error body.
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

pub mod auth;
mod dashboard;
mod error;
mod middleware;
mod openapi;
mod router;
mod routes;
pub mod serve;
pub mod session;
pub mod tls;
mod token;

use std::time::Duration;

use axum::Router;
use dubernetes_core::{Dubernetes, FollowLimits};
use tokio_util::sync::CancellationToken;

pub use dashboard::{CONTENT_SECURITY_POLICY, DashboardLink};
pub use error::{ApiError, ErrorCode};
pub use openapi::{ApiDoc, contract as openapi_contract, openapi_contract_gaps, openapi_document};
pub use router::{router, router_with_limits, router_with_shutdown};
pub use routes::AppState;
pub use routes::events::EventParams;
pub use routes::logs::LogParams;
pub use routes::meta::VersionInfo;
pub use routes::pods::{ApplyResponse, RollbackRequest, WriteParams};
pub use routes::watch::WatchParams;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Default per-request deadline (`--request-timeout-seconds`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`app`] needs besides the orchestrator.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bearer token every request but `GET /healthz` must carry.
    pub token: auth::Token,
    /// Deadline of one request, from its head to the end of its answer.
    pub request_timeout: Duration,
    /// Caps on followed logs (`GET /v1/pods/{name}/logs?follow=true`).
    pub log_follows: FollowLimits,
}

/// The API as served: [`router`] behind authentication, a request deadline,
/// a body limit, and uniform JSON errors. No CORS layer: browsers on other
/// origins cannot read answers, and the token is not a cookie they could send.
pub fn app(orchestrator: Dubernetes, config: ApiConfig) -> Router {
    app_with_shutdown(orchestrator, config, CancellationToken::new())
}

/// [`app`], with a token that ends the long-lived streams (watch, followed
/// logs) when cancelled, so a graceful shutdown does not wait for them. The
/// request deadline bounds the time to the answer's head, not a stream's body.
pub fn app_with_shutdown(orchestrator: Dubernetes, config: ApiConfig, shutdown: CancellationToken) -> Router {
    let metrics = orchestrator.metrics().clone();
    let router = router_with_limits(orchestrator, shutdown, config.log_follows.clone());
    middleware::wrap(router, &config, metrics)
}
