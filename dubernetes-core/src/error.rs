//! The error type of the library.

use crate::spec::{SpecError, ValidationError};

/// Everything that can go wrong in Dubernetes, for callers to match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spec failed validation; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// YAML input could not be read as pod specs; nothing was changed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The named pod does not exist.
    #[error("pod {0:?} not found")]
    NotFound(String),
    /// A request conflicts with the current state (e.g. a name in the body that differs from the one in the path).
    #[error("{0}")]
    Conflict(String),
    /// A conditional write named a generation the pod is no longer at: someone
    /// else changed it since the client read it. Re-read and try again.
    #[error(
        "generation: pod {pod:?} is at generation {current}, not {expected}; someone changed it since you read it: re-read it and retry"
    )]
    StaleGeneration {
        /// The pod.
        pod: String,
        /// The generation the client sent.
        expected: i64,
        /// The generation the pod is at.
        current: i64,
    },
    /// The database file exists but cannot be read as a healthy SQLite database.
    /// It is left untouched: restore a backup or move it away.
    #[error(
        "the database {path} is unreadable or corrupted ({detail}); it was left untouched. \
         Restore it from a backup (`dubernetes-server backup`, see docs/security.md) or move it away to start empty"
    )]
    Corrupt {
        /// The database file.
        path: String,
        /// What SQLite said.
        detail: String,
    },
    /// A limit of this instance was reached.
    #[error("{0}")]
    Limit(String),
    /// The SQLite store failed.
    #[error("store error: {0}")]
    Store(#[from] sqlx::Error),
    /// Applying the store's migrations failed.
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Docker engine could not be reached or refused a call.
    #[error("docker: {context}: {source}")]
    Docker {
        /// What we were doing.
        context: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker call took longer than its deadline.
    #[error("docker: {0} timed out")]
    DockerTimeout(String),
    /// A cap on concurrent streams (followed logs) is reached: retry later.
    #[error("{0}")]
    TooManyStreams(String),
    /// The ingress could not be configured.
    #[error("ingress: {0}")]
    Ingress(String),
    /// A wait did not finish before its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A watch asked to resume from a version the change feed no longer holds:
    /// list again and watch from the version of that list.
    #[error("expired: {0}")]
    Expired(String),
    /// The instance is shutting down.
    #[error("the orchestrator is shutting down")]
    ShuttingDown,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
