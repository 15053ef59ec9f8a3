//! # dubernetes-api
//!
//! The types of the Dubernetes API, without IO (like `kube-core` for
//! Kubernetes): what a client sends ([`PodSpec`], with its strict parsing and
//! validation), what the server answers ([`Pod`] and its [`PodStatus`],
//! [`Revision`]s, [`Event`]s, [`WatchEvent`]s, [`LogLine`]s) and how it fails
//! ([`ApiError`] with a stable [`ErrorCode`]). Outcomes, phases, condition
//! types and event kinds are enums whose JSON is the word they always were.
//!
//! `dubernetes-core` (the orchestrator) and the server use these types, and
//! `dubectl` needs nothing else to talk to a server: no engine client, no
//! database, no templates.
//!
//! ```
//! let specs = dubernetes_api::parse_specs("name: web\nimage: nginx:1.27\nreplicas: 2\n")?;
//! assert_eq!(specs[0].replicas, 2);
//! # Ok::<(), dubernetes_api::SpecError>(())
//! ```
#![deny(missing_docs)]
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

pub mod error;
pub mod event;
pub mod limits;
pub mod logs;
pub mod node;
pub mod pod;
pub mod revision;
pub mod run;
pub mod secret;
pub mod spec;
pub mod volume;
pub mod watch;

pub use error::{ApiError, ErrorCode};
pub use event::{Event, EventKind};
pub use limits::{ContainerLimits, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT};
pub use logs::{LogLine, LogStream, MAX_LOG_LINE_BYTES};
pub use node::Node;
pub use pod::{Condition, ConditionType, ContainerState, Phase, Pod, PodStatus, Replica, ReplicaCounts, TlsStatus};
pub use revision::{ApplyOutcome, ApplyResponse, Revision, RolloutOutcome, RolloutState};
pub use run::{ExecRequest, Run, RunExit, RunRequest};
pub use secret::{
    AnySecret, DataSecret, MAX_CERTIFICATE_PEM_BYTES, NewAnySecret, NewSecret, NewTlsSecret, SecretType, TlsSecret,
    check_secret_name, name_covers,
};
pub use spec::{
    Access, CheckKind, DEFAULT_HOOK_TIMEOUT, DEFAULT_INGRESS_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_MIN_READY, EnvValue,
    FieldError, HealthCheck, Hooks, IMPLICIT_CHECK_INTERVAL, Logging, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS,
    MAX_HOOK_TIMEOUT, MAX_HOSTS, MAX_MAX_BODY, MAX_PIDS, MAX_REPLICAS, MAX_SECRET_FILES, MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH, MAX_STORED_SPEC_BYTES, PodSpec, PullPolicy, Resources, RestartBackoff, SecretFiles, SecretKeyRef,
    Security, SpecError, Strategy, Tls, UpdateStrategy, ValidationError, check_stored_size, integral_numbers,
    parse_json_spec, parse_memory, parse_specs,
};
pub use spec::{
    Concurrency, CronSchedule, DEFAULT_CRON_HISTORY, DEFAULT_STARTING_DEADLINE, MAX_CRON_HISTORY, MAX_SCHEDULE_BYTES,
};
pub use spec::{Constraint, ConstraintKey, LabelKey, MAX_CONSTRAINTS, MAX_PLACEMENT_TOKEN, NodeFacts, Placement};
pub use spec::{
    DEFAULT_TMPFS_BYTES, MAX_IMAGE_NAME, MAX_IMAGE_REFERENCE, MAX_MOUNT_PATH_BYTES, MAX_TMPFS_BYTES, MAX_VOLUMES,
    Volume, VolumeMount, check_volume_name,
};
pub use spec::{Expose, MAX_EXPOSE, parse_listen};
pub use volume::NamedVolume;
pub use watch::{WatchEvent, WatchKind};

/// A stored or sent word that names no value of an enum (e.g. a rollout
/// outcome read back from a store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
}

impl ParseEnumError {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        ParseEnumError {
            what,
            value: value.chars().take(64).collect(),
        }
    }
}
