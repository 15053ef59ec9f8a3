//! # dubernetes-core
//!
//! A small, honest container orchestrator for one machine, as a library.
//! You describe pods (an image, a number of replicas, an optional host name);
//! Dubernetes keeps that many Docker containers running and routes the host
//! through an nginx ingress container.
//!
//! ```no_run
//! use std::time::Duration;
//! use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};
//!
//! # async fn demo() -> Result<(), dubernetes_core::Error> {
//! let orchestrator = Dubernetes::builder()
//!     .instance("demo")
//!     .in_memory()
//!     .ingress(IngressSettings::new("dubernetes/nginx:local-4", "127.0.0.1:0".parse().unwrap()))
//!     .build()
//!     .await?;
//! orchestrator.apply(PodSpec::new("whoami", "dubernetes/whoami:v1").with_replicas(3).with_host("whoami.local")).await?;
//! let pod = orchestrator.wait_ready("whoami", Duration::from_secs(30)).await?;
//! println!("{} of {} ready", pod.status.ready_replicas, pod.status.desired_replicas);
//! // Stops the controller and removes every container and the network of the instance.
//! orchestrator.purge().await?;
//! # Ok(())
//! # }
//! ```
//!
//! How it works (see `docs/architecture.md`): desired state lives in SQLite
//! ([`PodSpec`]s with a generation); observed state lives in Docker (every
//! container carries labels naming its instance, pod and revision). A
//! controller reconciles each pod — observe, plan (a pure function), act —
//! woken by API writes and Docker events, with a periodic resync.
//!
//! The types of the API (specs, views, revisions, events, watch events, log
//! lines, error bodies) live in [`dubernetes_api`], a crate without IO that
//! clients such as `dubectl` use alone; they are re-exported here at the paths
//! they always had.
#![deny(missing_docs)]
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

pub use dubernetes_api;

mod acme;
mod builder;
mod certificate;
mod change;
mod clock;
mod controller;
mod crashloop;
mod data_dir;
mod data_secrets;
mod engine;
mod error;
mod health;
mod http_check;
mod ids;
mod ingress;
pub mod labels;
mod leader;
mod logs;
mod metrics;
mod names;
mod nodes;
mod orchestrator;
mod owned_engine;
mod ownership;
#[cfg(any(test, feature = "testing"))]
pub mod pg_cluster;
mod plan;
mod rollout;
mod secrets;
mod spec;
mod status;
mod store;
mod sync;
#[doc(hidden)]
#[cfg(any(test, feature = "testing"))]
pub mod test_internals;
#[cfg(feature = "testing")]
pub mod testing;
mod vault;
mod volumes;
mod watch;

pub use acme::AcmeSettings;
pub use builder::DubernetesBuilder;
pub use change::Change;
pub use crashloop::BackoffSettings;
pub use dubernetes_api::{
    AnySecret, ApiError, ApplyResponse, DataSecret, ErrorCode, NamedVolume, NewAnySecret, NewSecret, NewTlsSecret,
    ReplicaCounts, SecretType, TlsSecret,
};
pub use engine::Backend;
pub use engine::LogSource;
pub use error::{DataDirProblem, Error, PullFailure, Result, StoreError};
pub use ingress::{IngressSettings, ListenerStatus};
pub use logs::{FollowLimits, LogLine, LogLines, LogOptions, LogStream};
pub use metrics::{Metrics, StreamGuard, StreamKind};
pub use orchestrator::exec::{Exec, ExecControl, ExecOptions};
pub use orchestrator::runs::RunItem;
pub use orchestrator::{Condition, ConditionType, Diagnostics, Dubernetes, Phase, Pod, PodStatus, Replica};
pub use owned_engine::{ContainerLimits, ContainerState};
pub use spec::{
    Access, CheckKind, FieldError, HealthCheck, Logging, PodSpec, Resources, RestartBackoff, Security, SpecError,
    Strategy, Tls, UpdateStrategy, ValidationError, Volume, VolumeMount, check_stored_size, integral_numbers,
    parse_json_spec, parse_memory, parse_specs,
};
pub use store::{ApplyOutcome, Event, EventKind, Revision, RolloutOutcome, RolloutState, backup};
pub use watch::{WatchEvent, WatchKind};

/// The limits the library enforces, each documented with its value in
/// docs/spec.md or docs/api.md: what a spec, a secret, a log line or the
/// store may hold.
pub mod limits {
    pub use crate::acme::MAX_RETRY as MAX_ACME_RETRY;
    pub use crate::data_secrets::{MAX_SECRET_KEYS, MAX_SECRET_VALUE_BYTES};
    pub use crate::logs::MAX_LOG_LINE_BYTES;
    pub use crate::orchestrator::cron::MAX_PASS_INTERVAL as CRON_PASS_INTERVAL;
    pub use crate::secrets::MAX_CERTIFICATE_PEM_BYTES;
    pub use crate::spec::{
        MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_PIDS, MAX_REPLICAS, MAX_SPEC_BYTES, MAX_SPEC_DEPTH,
        MAX_STORED_SPEC_BYTES,
    };
    pub use crate::store::{MAX_EVENT_MESSAGE_BYTES, MAX_EVENTS, MAX_REVISIONS};
    pub use crate::watch::{HISTORY as WATCH_HISTORY, HISTORY_BYTES as WATCH_HISTORY_BYTES};
}

/// The defaults of settings and spec fields a caller may leave out.
pub mod defaults {
    pub use crate::acme::{DEFAULT_RENEW_BEFORE, DEFAULT_RETRY as DEFAULT_ACME_RETRY, LETS_ENCRYPT_PRODUCTION};
    pub use crate::engine::swarm::DEFAULT_PROBE_IMAGE;
    pub use crate::ingress::DEFAULT_INGRESS_IMAGE;
    pub use crate::logs::{DEFAULT_MAX_LOG_FOLLOW_REPLICAS, DEFAULT_MAX_LOG_FOLLOWS};
    pub use crate::orchestrator::exec::KILL_GRACE;
    pub use crate::orchestrator::runs::{DEFAULT_MAX_RUNS, DEFAULT_RUN_RETENTION};
    pub use crate::owned_engine::{DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT};
    pub use crate::spec::DEFAULT_MIN_READY;
}

/// The files and directories a server keeps in its data dir.
pub mod files {
    pub use crate::builder::{INGRESS_ENDPOINTS_DIR, SECRET_FILES_DIR};
    pub use crate::data_dir::{DB_FILE, LOCK_FILE};
    pub use crate::vault::KEY_FILE as SECRETS_KEY_FILE;
}

/// The timing of leader election on a shared PostgreSQL store
/// (docs/architecture.md, "Leadership").
pub mod leadership {
    pub use crate::leader::{CONFIRM_TIMEOUT, FENCE_AFTER, HEARTBEAT, SESSION_TIMEOUT};
}

/// Names on the wire: the metrics' content type, the environment variable
/// that marks an exec's process.
pub mod protocol {
    pub use crate::metrics::METRICS_CONTENT_TYPE;
    pub use crate::orchestrator::exec::EXEC_MARKER_ENV;
}
