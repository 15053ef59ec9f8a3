//! The error type of the library.

use std::path::PathBuf;

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
    /// The host (and path) is already routed to another pod (field
    /// `access.host`, or `access.path` for a path other than `/`); nothing
    /// was written. `owner` is that pod, when known.
    #[error("{}", host_taken(host, path, owner.as_deref()))]
    HostTaken {
        /// The host name.
        host: String,
        /// The path prefix (`/`: the whole host).
        path: String,
        /// The pod it is routed to.
        owner: Option<String>,
    },
    /// A TLS certificate or key is unusable, or a pod's `access.tls` names a
    /// secret that cannot serve its host; nothing was changed.
    #[error("{field}: {message}")]
    Certificate {
        /// The input at fault: `cert`, `key`, `name`, `access.tls.secret`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// No TLS secret of this name.
    #[error("secret {0:?} not found; `dubectl get secrets` lists them")]
    SecretNotFound(String),
    /// A TLS secret of this name exists already (create refuses to replace it).
    #[error("name: secret {0:?} exists already; replace it with `dubectl create secret tls {0} --replace ...`")]
    SecretExists(String),
    /// The secret is named by pods' `access.tls.secret`; nothing was deleted.
    #[error("secret {name:?} is used by pod(s) {}; change their access.tls first", pods.join(", "))]
    SecretInUse {
        /// The secret.
        name: String,
        /// The pods that use it.
        pods: Vec<String>,
    },
    /// A generic or docker-registry secret, or a pod's reference to one, is
    /// unusable; nothing was changed. The message never quotes a value.
    #[error("{field}: {message}")]
    InvalidSecret {
        /// The input at fault, e.g. `data.KEY`, `env.DB_PASSWORD.secret`, `image_pull_secret`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret of this name exists already (of any type); nothing was changed.
    #[error(
        "name: secret {0:?} exists already; replace it with `dubectl create secret ... --replace`, or pick another name"
    )]
    SecretTaken(String),
    /// The secret is used by pods (env, secret_files or image_pull_secret); nothing was deleted.
    #[error("secret {name:?} is used by pod(s) {}; change or delete those pods first", pods.join(", "))]
    SecretUsed {
        /// The secret.
        name: String,
        /// The pods that use it.
        pods: Vec<String>,
    },
    /// Secret values cannot be sealed or opened (no key, or not this store's key).
    #[error("secrets: {0}")]
    SecretsUnavailable(String),
    /// An image could not be made present (pulled, or found with `pull: never`).
    #[error("image {image:?}: {reason}: {message}")]
    ImagePull {
        /// The image reference.
        image: String,
        /// Why, in one word.
        reason: PullFailure,
        /// The engine's or registry's words (escaped, cut), never credentials.
        message: String,
    },
    /// No volume of this name in the instance.
    #[error("volume {0:?} not found; `dubectl get volumes` lists them")]
    VolumeNotFound(String),
    /// The volume is mounted by pods (or by a container still stopping); nothing was deleted.
    #[error("{}", if pods.is_empty() {
        format!("volume {name:?} is still mounted by a replica that is stopping; retry in a moment")
    } else {
        format!("volume {name:?} is used by pod(s) {}; delete them or remove the volume from their spec first", pods.join(", "))
    })]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The pods whose spec mounts it.
        pods: Vec<String>,
    },
    /// The engine has a volume of this name that this store did not make
    /// (another store's, or not Dubernetes'): it is never mounted, changed or
    /// deleted. Remove or rename it, or give the pod's volume another name.
    #[error(
        "volume {name:?}: the engine's volume {engine_name} exists and {}; it is left alone: remove or rename it yourself, or use another volume name",
        owner.as_ref().map_or_else(|| "was not made by Dubernetes".to_string(), |o| format!("belongs to another store ({o})"))
    )]
    VolumeNotOwned {
        /// The volume as the pod names it.
        name: String,
        /// The engine's name for it.
        engine_name: String,
        /// The store it is labelled with, if any.
        owner: Option<String>,
    },
    /// A rollback asked for a revision the pod does not have (`number`,
    /// field `to_revision`), or, without a number, the pod has no revision
    /// with another template to go back to.
    #[error("{}", match number {
        Some(n) => format!("to_revision: pod {pod} has no revision {n}; `dubectl rollout history {pod}` lists them"),
        None => format!("pod {pod} has no earlier revision to roll back to"),
    })]
    NoRevision {
        /// The pod.
        pod: String,
        /// The revision asked for (None: the previous one).
        number: Option<i64>,
    },
    /// An input other than a pod spec (a setting of the builder, a path) is
    /// not usable; nothing was changed.
    #[error("{field}: {message}")]
    InvalidInput {
        /// What is wrong, e.g. `instance name`.
        field: String,
        /// Why, and what to do.
        message: String,
    },
    /// A file that must be new exists (e.g. a backup's target); it was left untouched.
    #[error("{} already exists; pick a new file name", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, e.g. `creating /backup.db`.
        context: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A bug: something that cannot fail did.
    #[error("internal error: {0}")]
    Internal(String),
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
    /// A limit of this instance was reached; nothing was changed.
    #[error("{field}: {message}")]
    Limit {
        /// The input that hit the limit, e.g. `name` (one more pod) or `follow`.
        field: String,
        /// Which limit, and what to do.
        message: String,
    },
    /// The store's database failed.
    #[error("store error: {0}")]
    Store(StoreError),
    /// Applying the store's migrations failed.
    #[error("store migration failed: {0}")]
    Migrate(StoreError),
    /// The container engine could not be reached or refused a call.
    #[error("docker: {context}: {source}")]
    Docker {
        /// What we were doing.
        context: String,
        /// The engine's error (its own type stays inside its implementation).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The swarm backend was asked for on an engine that is not a swarm manager.
    #[error(
        "the swarm backend needs a Docker engine that is a swarm manager, and {0}: run `docker swarm init` \
         (one node) or point DOCKER_HOST at a manager of your swarm, or use --backend docker"
    )]
    NotSwarmManager(String),
    /// No node can run a pod's new replicas (its `placement`, its volumes' pin).
    #[error("no node can run it: {0}")]
    Unschedulable(String),
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
    /// This server's leadership term ended (it lost its database lock):
    /// it no longer acts on the engine.
    #[error("this server is no longer the leader of its instance; it does not act on the engine")]
    Fenced,
    /// The data dir cannot be used; nothing was changed.
    #[error("data dir {}: {problem}", path.display())]
    DataDir {
        /// The data dir (absolute).
        path: PathBuf,
        /// What is wrong with it.
        problem: DataDirProblem,
    },
    /// The engine runs containers of this instance that this store does not
    /// own (another store's, or unlabelled ones this store has no reason to
    /// think are its own). The start was refused before anything was stopped,
    /// removed or created.
    #[error("{}", foreign_message(instance, *count, store_id, other_stores, data_dirs, *unlabelled))]
    ForeignContainers {
        /// The instance.
        instance: String,
        /// How many containers are foreign.
        count: usize,
        /// This store's id.
        store_id: String,
        /// The store ids they are labelled with.
        other_stores: Vec<String>,
        /// The data dirs those stores were last seen with (from the containers' labels).
        data_dirs: Vec<String>,
        /// How many carry no store label (made by a version before store ids).
        unlabelled: usize,
    },
    /// `adopt_foreign` was asked for, but the server of the store that made
    /// the containers still runs (it holds its data dir's lock): two servers
    /// would manage the same containers. Nothing was changed.
    #[error(
        "refusing to adopt: containers of instance {instance:?} belong to the store in {data_dir}, whose server still runs (pid {}); \
         stop that server first and start again with --adopt-foreign, or use it (--data-dir {data_dir}). Nothing was changed",
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    ForeignServerRunning {
        /// The instance.
        instance: String,
        /// The other store's data dir.
        data_dir: String,
        /// The pid its server wrote into its lock file.
        pid: Option<u32>,
    },
    /// An `expose` entry's listen port is taken (by another pod's `expose`,
    /// or by the ingress's own HTTP or HTTPS listener); nothing was written.
    #[error("{field}: port {port} is already the listen port of {owner}; choose another")]
    ListenTaken {
        /// The entry at fault, e.g. `expose[0].listen`.
        field: String,
        /// The listen port.
        port: u16,
        /// Who has it: `pod "db"` or `the ingress's HTTP listener`.
        owner: String,
    },
    /// An exec found no ready replica to run in (or not the one named).
    #[error("{0}")]
    NoReadyReplica(String),
    /// As many one-off runs of the instance run as the server allows.
    #[error(
        "runs: {running} one-off runs are running, the most this server allows (--max-runs {limit}); retry when one ends"
    )]
    TooManyRuns {
        /// Runs running now.
        running: usize,
        /// The limit.
        limit: usize,
    },
    /// No run of that name (it never was, or it was removed).
    #[error("run: pod {pod:?} has no run {run:?} (it may have been removed; GET /v1/pods/{pod}/runs lists them)")]
    RunNotFound {
        /// The pod.
        pod: String,
        /// The run asked for.
        run: String,
    },
}

/// Why a data dir cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirProblem {
    /// The path exists and is not a directory.
    #[error("is not a directory; point --data-dir at a directory, or at a path that does not exist yet")]
    NotADirectory,
    /// It (or a parent) cannot be created, or a file in it cannot be written.
    #[error("cannot be created or written ({detail}); pick a writable --data-dir or fix its owner and mode")]
    Unwritable {
        /// What the OS said.
        detail: String,
    },
    /// Another process holds the data dir's lock: one server per data dir.
    #[error(
        "is in use by another dubernetes-server (pid {}); one server per data dir: stop that one, or use another --data-dir",
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Locked {
        /// The holder's process id, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// No data dir was given and none could be chosen.
    #[error("no default ({reason}); set --data-dir or DUBERNETES_DATA_DIR")]
    NoDefault {
        /// Why.
        reason: String,
    },
}

fn foreign_message(
    instance: &str,
    count: usize,
    store_id: &str,
    other_stores: &[String],
    data_dirs: &[String],
    unlabelled: usize,
) -> String {
    let mut text = format!(
        "refusing to start: instance {instance:?} has {count} container(s) that this store (id {store_id}) does not own"
    );
    let labelled = count - unlabelled.min(count);
    if labelled > 0 {
        text.push_str(&format!(
            "; {labelled} of them belong to store {}",
            if other_stores.is_empty() {
                "(unknown)".to_string()
            } else {
                other_stores.join(", ")
            }
        ));
        if !data_dirs.is_empty() {
            text.push_str(&format!(", last seen with data dir {}", data_dirs.join(", ")));
        }
    }
    if unlabelled > 0 {
        text.push_str(&format!(
            "; {unlabelled} carry no store label (made by an older version, for a store this is not)"
        ));
    }
    let hint = match data_dirs {
        [one] if one != crate::labels::IN_MEMORY => format!(" (--data-dir {one})"),
        _ => String::new(),
    };
    text.push_str(&format!(
        ". Nothing was stopped, removed or created. Either start with the data dir of the store that made them{hint}, \
         or take them over with --adopt-foreign (DUBERNETES_ADOPT_FOREIGN=true; embedded: \
         DubernetesBuilder::adopt_foreign): they are adopted as they run, none is stopped or replaced, and those of \
         pods this store does not have are left alone until you apply such a pod. Stop the server that manages them first"
    ));
    text
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of [`Error::HostTaken`].
fn host_taken(host: &str, path: &str, owner: Option<&str>) -> String {
    let (field, what, other) = if path == "/" {
        ("access.host", format!("{host:?}"), "host")
    } else {
        ("access.path", format!("{path:?} of host {host:?}"), "path or host")
    };
    match owner {
        Some(o) => {
            format!("{field}: {what} is already routed to pod {o:?}; pick another {other} or change that pod first")
        }
        None => format!("{field}: {what} is already routed to another pod"),
    }
}

/// Why a pull failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullFailure {
    /// The registry refused the credentials (or none were sent): set or fix `image_pull_secret`.
    Unauthorized,
    /// The registry has no such repository or tag.
    NotFound,
    /// The registry could not be reached (refused, no such host, timed out).
    Unreachable,
    /// `pull: never` and the engine does not have the image.
    NotPresent,
    /// Anything else the engine said.
    Other,
}

impl std::fmt::Display for PullFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullFailure::Unauthorized => "unauthorized",
            PullFailure::NotFound => "not found",
            PullFailure::Unreachable => "registry unreachable",
            PullFailure::NotPresent => "not present",
            PullFailure::Other => "pull failed",
        })
    }
}

/// The store's database error, opaque: the database driver's own error type
/// is not part of the library's API (it can change with the driver). Its
/// message and [`std::error::Error::source`] chain say what failed.
#[derive(Debug)]
pub struct StoreError(Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    /// The driver's error, for the store's own checks (a unique violation).
    pub(crate) fn sqlx(&self) -> Option<&sqlx::Error> {
        self.0.downcast_ref::<sqlx::Error>()
    }

    /// A stored value that does not decode (e.g. a spec's JSON).
    pub(crate) fn decode(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(sqlx::Error::Decode(Box::new(e))))
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(StoreError(Box::new(e)))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(StoreError(Box::new(e)))
    }
}
