//! The handlers of the API, one module per resource, and the state they
//! share; [`crate::router`] puts them on their paths.

pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod logs;
pub(crate) mod meta;
pub(crate) mod nodes;
pub(crate) mod pods;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod volumes;
pub(crate) mod watch;

use axum::extract::FromRef;
use axum::http::HeaderValue;
use dubernetes_core::{Dubernetes, FollowLimits};
use tokio_util::sync::CancellationToken;

/// The state the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) orchestrator: Dubernetes,
    /// Cancelled when the server shuts down: long-lived streams (watch,
    /// `logs?follow`) end so the graceful shutdown does not wait for them.
    pub(crate) shutdown: CancellationToken,
    /// Caps on followed logs, shared by every request.
    pub(crate) log_follows: FollowLimits,
}

impl FromRef<AppState> for Dubernetes {
    fn from_ref(state: &AppState) -> Dubernetes {
        state.orchestrator.clone()
    }
}

pub(crate) fn version_header(version: u64) -> [(&'static str, HeaderValue); 1] {
    [("x-watch-version", HeaderValue::from(version))]
}
