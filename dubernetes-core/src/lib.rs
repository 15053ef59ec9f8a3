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

pub use dubernetes_api;

mod acme;
mod builder;
mod certificate;
mod controller;
mod crashloop;
mod cron;
mod data_dir;
mod data_secrets;
mod engine;
mod error;
mod exec;
mod health;
mod ingress;
mod logs;
mod metrics;
mod names;
mod nodes;
mod orchestrator;
mod ownership;
#[cfg(any(test, feature = "testing"))]
pub mod pg_cluster;
mod plan;
mod probe;
mod rollout;
mod runs;
mod runtime;
mod secrets;
mod shared;
mod spec;
mod status;
mod store;
mod sync;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod test_internals;
#[cfg(feature = "testing")]
pub mod testing;
mod vault;
mod volumes;
mod watch;

pub use acme::{
    AcmeSettings, DEFAULT_RENEW_BEFORE, DEFAULT_RETRY as DEFAULT_ACME_RETRY, LETS_ENCRYPT_PRODUCTION,
    MAX_RETRY as MAX_ACME_RETRY,
};
pub use builder::{INGRESS_ENDPOINTS_DIR, SECRET_FILES_DIR};
pub use controller::{BackoffSettings, Change};
pub use cron::{LABEL_CRON, MAX_PASS_INTERVAL as CRON_PASS_INTERVAL};
pub use data_dir::LOCK_FILE;
pub use data_secrets::{MAX_SECRET_KEYS, MAX_SECRET_VALUE_BYTES};
pub use dubernetes_api::{
    AnySecret, ApiError, ApplyResponse, DataSecret, ErrorCode, NamedVolume, NewAnySecret, NewSecret, NewTlsSecret,
    ReplicaCounts, SecretType, TlsSecret,
};
pub use engine::Backend;
pub use engine::LogSource;
pub use engine::swarm::{DEFAULT_PROBE_IMAGE, LABEL_IMAGE};
pub use error::{DataDirProblem, Error, PullFailure, Result, StoreError};
pub use exec::{EXEC_MARKER_ENV, Exec, ExecControl, ExecOptions, KILL_GRACE};
pub use ingress::{DEFAULT_INGRESS_IMAGE, IngressSettings};
pub use logs::{
    DEFAULT_MAX_LOG_FOLLOW_REPLICAS, DEFAULT_MAX_LOG_FOLLOWS, FollowLimits, LogLine, LogLines, LogOptions, LogStream,
    MAX_LOG_LINE_BYTES,
};
pub use metrics::{METRICS_CONTENT_TYPE, Metrics, StreamGuard, StreamKind};
pub use orchestrator::{
    Condition, ConditionType, Diagnostics, Dubernetes, DubernetesBuilder, Phase, Pod, PodStatus, Replica,
};
pub use ownership::{LABEL_DATA_DIR, LABEL_STORE};
pub use runs::{DEFAULT_MAX_RUNS, DEFAULT_RUN_RETENTION, LABEL_RUN, RunItem};
pub use runtime::{
    ContainerLimits, ContainerState, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT, LABEL_INSTANCE,
    LABEL_POD, LABEL_REVISION, LABEL_ROLE,
};
pub use secrets::MAX_CERTIFICATE_PEM_BYTES;
pub use shared::{
    CONFIRM_TIMEOUT as LEADER_CONFIRM_TIMEOUT, FENCE_AFTER as LEADER_FENCE_AFTER, HEARTBEAT as LEADER_HEARTBEAT,
    SESSION_TIMEOUT as LEADER_SESSION_TIMEOUT,
};
pub use spec::{
    Access, CheckKind, DEFAULT_MIN_READY, FieldError, HealthCheck, Logging, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS,
    MAX_PIDS, MAX_REPLICAS, MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_STORED_SPEC_BYTES, PodSpec, Resources, RestartBackoff,
    Security, SpecError, Strategy, Tls, UpdateStrategy, ValidationError, Volume, VolumeMount, check_stored_size,
    integral_numbers, parse_json_spec, parse_memory, parse_specs,
};
pub use store::{
    ApplyOutcome, DB_FILE, Event, EventKind, MAX_EVENT_MESSAGE_BYTES, MAX_EVENTS, MAX_REVISIONS, Revision,
    RolloutOutcome, RolloutState, backup,
};
pub use vault::KEY_FILE as SECRETS_KEY_FILE;
pub use watch::{HISTORY as WATCH_HISTORY, HISTORY_BYTES as WATCH_HISTORY_BYTES, WatchEvent, WatchKind};
