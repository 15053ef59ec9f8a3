//! The engine seam: what the controller and the ingress need from a
//! container engine, in our own words (containers with labels and states,
//! replica templates, events, log chunks), never in an engine's structs.
//!
//! [`Engine`] is implemented for Docker through bollard ([`docker`]), for
//! Docker Swarm mode on top of it ([`swarm`]: one service per replica) and,
//! for tests, in memory ([`fake`]). Nothing outside `engine/docker.rs` and
//! `engine/swarm.rs` names a bollard type.
//!
//! The engine is never used bare: [`crate::owned_engine::Runtime`] wraps it and
//! adds what every implementation must guarantee and none may forget, this
//! store's ownership (a list shows only the containers the store manages; a
//! create always carries the store's labels).
//!
//! Implementations are idempotent where the controller retries: `start` of a
//! started container, `stop` of a stopped or missing one and `remove` of a
//! missing one succeed. Every call has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;

pub(crate) mod bind;
pub(crate) mod docker;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub(crate) mod nodes;
pub(crate) mod placement;
pub(crate) mod swarm;

pub use dubernetes_api::ContainerState;

/// Which engine the orchestrator drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// One Docker engine: replicas are containers on a bridge network.
    #[default]
    Docker,
    /// A Docker Swarm (the engine must be a manager): each replica is a Swarm
    /// service of one task on an attachable overlay network, placed by Swarm
    /// on any node; the ingress stays a container on this engine.
    Swarm,
}

impl Backend {
    /// Its name, as `--backend` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Docker => "docker",
            Backend::Swarm => "swarm",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Backend, String> {
        match s {
            "docker" => Ok(Backend::Docker),
            "swarm" => Ok(Backend::Swarm),
            other => Err(format!("unknown backend `{other}`: use `docker` or `swarm`")),
        }
    }
}

/// A container of this instance, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The engine's id.
    pub id: String,
    /// The container's name (no leading `/`).
    pub name: String,
    /// `replica` or `ingress` (its `io.dubernetes.role` label).
    pub role: String,
    /// The pod it belongs to (its `io.dubernetes.pod` label).
    pub pod: Option<String>,
    /// The revision it runs (its `io.dubernetes.revision` label).
    pub revision: Option<String>,
    /// Its state.
    pub state: ContainerState,
    /// The engine's status text, e.g. `Exited (1) 3 seconds ago`.
    pub status: String,
    /// Address on the instance network.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// All its labels.
    pub labels: HashMap<String, String>,
    /// Running, passing its readiness check (if any) and routed: set by the
    /// controller after listing, false straight from the engine.
    pub ready: bool,
}

impl Observed {
    /// Exit code parsed from the engine's status text, for exited containers.
    pub fn exit_code(&self) -> Option<i64> {
        let rest = self.status.strip_prefix("Exited (")?;
        rest.split(')').next()?.parse().ok()
    }
}

/// Most bytes of a crashed replica's last log lines kept for its status and
/// event ([`Engine::log_tail`] returns at most this many, whatever the lines' length).
pub(crate) const LOG_TAIL_BYTES: usize = 4 * 1024;

// The limits are engine-neutral data in `dubernetes-api`; `docker.rs` writes
// them into a host config.
pub use dubernetes_api::limits::{ContainerLimits, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT};

/// What a container runs: a replica, or the ingress.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Its name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// The TCP port it listens on (exposed on the instance network).
    pub port: u16,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Replaces the image's entrypoint.
    pub command: Option<Vec<String>>,
    /// Replaces the image's arguments.
    pub args: Option<Vec<String>>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Its labels (the runtime adds the store's).
    pub labels: HashMap<String, String>,
    /// The network it joins.
    pub network: String,
    /// Host protection.
    pub limits: ContainerLimits,
    /// Publish `port` on this host address (port 0: any free port). Only the ingress does.
    pub publish: Option<SocketAddr>,
    /// Also publish container port 443 on this host address (the ingress's HTTPS).
    pub publish_tls: Option<SocketAddr>,
    /// Host directories bound read-write into the container (only the
    /// ingress has one: its endpoint files, see [`Engine::is_local`]).
    pub binds: Vec<BindDir>,
    /// What the replica takes from secrets (never printed).
    pub secrets: SecretMaterial,
    /// Volumes and tmpfs mounts (a replica's `volumes`).
    pub mounts: Vec<Mount>,
    /// DNS servers the engine's embedded DNS forwards to (replicas: the
    /// instance's name responder, see `names.rs`); empty: the engine's default.
    pub dns: Vec<std::net::IpAddr>,
    /// A fixed address on `network` (the name responder's, outside the
    /// range the engine hands out; see [`Engine::names_address`]).
    pub ip: Option<std::net::IpAddr>,
    /// The engine restarts it when it exits (unless stopped).
    pub restart: bool,
    /// A plain container of this engine even on Swarm (the name responder,
    /// as the ingress and the probe agent).
    pub plain: bool,
    /// Every node running it must satisfy these: the pod's
    /// `placement.constraints`, and what [`Engine::place`] adds (a zone of
    /// the spread, the node a volume is pinned to).
    pub constraints: Vec<dubernetes_api::Constraint>,
    /// The pod's `placement.spread` label.
    pub spread: Option<dubernetes_api::LabelKey>,
}

impl ContainerSpec {
    /// The engine names of the named volumes it mounts.
    pub fn volume_names(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter_map(|m| match m {
                Mount::Volume { source, .. } => Some(source.clone()),
                Mount::Tmpfs { .. } => None,
            })
            .collect()
    }
}

/// What a replica takes from secrets, resolved by the controller when it
/// creates the replica: env values, directories of secret files, the
/// registry credentials of its image. Its `Debug` prints counts only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretMaterial {
    /// `KEY=value` pairs added to the container's env.
    pub env: Vec<String>,
    /// Host directories (written by the server: one file per key) bound read-only.
    pub files: Vec<BindDir>,
    /// Credentials for the image's registry (sent with the pull, and with a
    /// Swarm service as `--with-registry-auth` does).
    pub registry_auth: Option<RegistryAuth>,
}

impl std::fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretMaterial")
            .field("env", &self.env.len())
            .field("files", &self.files)
            .field("registry_auth", &self.registry_auth.as_ref().map(|a| &a.server))
            .finish()
    }
}

/// Registry credentials (a docker-registry secret, opened); `Debug` prints the server only.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry host, e.g. `127.0.0.1:5000`.
    pub server: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// How an image is to be made present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// When to pull.
    pub policy: crate::spec::PullPolicy,
    /// Credentials for the registry.
    pub auth: Option<RegistryAuth>,
}

impl Pull {
    /// Pull only when missing, without credentials (the ingress, the probe agent).
    pub fn if_missing() -> Pull {
        Pull {
            policy: crate::spec::PullPolicy::IfNotPresent,
            auth: None,
        }
    }
}

/// A mount of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The engine's volume `source` (made first with [`Engine::ensure_volume`]) at `target`.
    Volume {
        /// The engine's name of the volume.
        source: String,
        /// The absolute path in the container.
        target: String,
        /// Labels for an engine that makes the volume itself when the
        /// replica starts (a Swarm node other than this one).
        labels: HashMap<String, String>,
    },
    /// A tmpfs of at most `bytes` at `target`.
    Tmpfs {
        /// The absolute path in the container.
        target: String,
        /// Its size limit.
        bytes: u64,
    },
}

/// A volume as the engine shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeInfo {
    /// The engine's name.
    pub name: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// When the engine made it (RFC 3339), if it says.
    pub created_at: Option<String>,
    /// Bytes on disk, where the engine knows (Docker's disk-usage data).
    pub size: Option<u64>,
}

/// A host directory bound into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindDir {
    /// The directory on the engine's host (absolute; made by the engine if missing).
    pub host: std::path::PathBuf,
    /// Where it appears in the container.
    pub container: String,
}

/// Something that happened to a container of the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// What happened: `start`, `die`, `kill`, `oom`, `destroy`, ... (may carry
    /// a suffix, as Docker's `exec_create: ...`: match on prefixes).
    pub action: String,
    /// The container's id.
    pub id: Option<String>,
    /// The container's labels, and details such as `signal` for a `kill`.
    pub attributes: HashMap<String, String>,
}

/// Which output of a container a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// Standard output (and anything that is not standard error).
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a container's log, as the engine sends it (not split into lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Where it came from.
    pub source: LogSource,
    /// The bytes.
    pub bytes: Bytes,
}

/// What to read of a container's log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogRequest {
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// Only the last lines.
    pub tail: Option<usize>,
    /// Only lines since this Unix second.
    pub since: Option<i64>,
}

/// A container engine, in the controller's words.
///
/// Lists return every container of the instance (all states), whoever owns
/// it: ownership is applied above, by [`crate::owned_engine::Runtime`].
#[async_trait]
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// The API version in use (for `/v1/version`).
    fn api_version(&self) -> String;

    /// Which backend this is (for `/v1/version`).
    fn backend(&self) -> Backend {
        Backend::Docker
    }

    /// A new connection to the same engine, for a clean-up that runs on
    /// another async runtime than the one this connection was made on.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    async fn reconnect(&self) -> Result<Arc<dyn Engine>>;

    /// How the host reaches addresses on the engine's networks (readiness
    /// checks, the ingress's published port).
    fn network(&self) -> Arc<dyn Network>;

    /// Creates the instance's network if it is missing.
    async fn ensure_network(&self, name: &str, instance: &str) -> Result<()>;

    /// Removes a network; a missing one is fine.
    async fn remove_network(&self, name: &str) -> Result<()>;

    /// The fixed address of the instance's name responder on `network`: the
    /// last usable address of its subnet, when the network was made with an
    /// address range that leaves it out (as [`Engine::ensure_network`] makes
    /// them). None: the network has no such reserved address (made by an
    /// older version, or by hand), and pods get no names.
    async fn names_address(&self, _network: &str) -> Result<Option<std::net::IpAddr>> {
        Ok(None)
    }

    /// Every container labelled with `instance` (and `pod`, if given), in
    /// every state; `ip` is its address on `network`.
    async fn list(&self, instance: &str, network: &str, pod: Option<&str>) -> Result<Vec<Observed>>;

    /// Creates the volume `name` with `labels` unless it exists; returns the
    /// volume as it is (one that existed keeps its own labels: the caller
    /// checks whose it is before it mounts it).
    async fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<VolumeInfo> {
        Ok(VolumeInfo {
            name: name.to_string(),
            labels: labels.clone(),
            ..VolumeInfo::default()
        })
    }

    /// The volume `name`, if it exists.
    async fn inspect_volume(&self, _name: &str) -> Result<Option<VolumeInfo>> {
        Ok(None)
    }

    /// Every volume labelled with `instance`; with `sizes`, their sizes
    /// where the engine knows them (the engine measures every volume: slow).
    async fn list_volumes(&self, _instance: &str, _sizes: bool) -> Result<Vec<VolumeInfo>> {
        Ok(Vec::new())
    }

    /// Removes a volume; a missing one is fine; one a container mounts is
    /// [`Error::VolumeInUse`](crate::error::Error::VolumeInUse) with no pods.
    async fn remove_volume(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Where `count` new replicas of `spec` go: the constraints each adds to
    /// `spec.constraints` (see `placement.rs`), volume pins recorded first;
    /// [`Error::Unschedulable`](crate::error::Error::Unschedulable) when no
    /// node can run them. The default: anywhere.
    async fn place(&self, _spec: &ContainerSpec, count: usize) -> Result<Vec<Vec<dubernetes_api::Constraint>>> {
        Ok(vec![Vec::new(); count])
    }

    /// The nodes that run replicas, with the instance's running replicas on each.
    async fn nodes(&self, _instance: &str) -> Result<Vec<dubernetes_api::Node>> {
        Ok(Vec::new())
    }

    /// Makes sure `image` is present as `pull` says (pulling it with its
    /// credentials if the engine can); a failed pull is [`crate::Error::ImagePull`].
    async fn ensure_image(&self, image: &str, pull: &Pull) -> Result<()>;

    /// Creates a container without starting it; returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;

    /// Starts a container; "already started" is success.
    async fn start(&self, id: &str) -> Result<()>;

    /// Stops a container: its stop signal, then a kill after `grace`. A
    /// missing or stopped one is fine. May take the whole grace period.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a container at once (killing it if it runs); a missing one is fine.
    async fn remove(&self, id: &str) -> Result<()>;

    /// Sends a signal (e.g. `HUP`) to a container's main process.
    async fn signal(&self, id: &str, signal: &str) -> Result<()>;

    /// Runs a command in a container; returns its exit code and combined output.
    async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, String)>;

    /// Writes one file into a container (created or running).
    async fn write_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()>;

    /// Writes one file readable by its owner only (mode 0600: a private
    /// key); `file` may name subdirectories of `dir`, created as needed.
    async fn write_private_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()>;

    /// Writes several files into a container in one call, in order; `files`
    /// are paths relative to `dir` (which must exist), their directories are
    /// made as needed. Each file is replaced whole, but not atomically: a
    /// reader may see it missing or half written while it is replaced.
    async fn write_files(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        // One archive entry per call, named by its relative path: the engine
        // makes the directories (Docker's archive API does).
        for (path, content) in files {
            self.write_file(id, dir, path, content).await?;
        }
        Ok(())
    }

    /// Whether the engine runs on this machine (reached through a local
    /// socket), so a directory of this process's host can be bound into a
    /// container ([`ContainerSpec::binds`]). Whether the container really
    /// sees what this process writes there is still checked (this process
    /// may run in a container of its own): see [`Engine::read_files`].
    fn is_local(&self) -> bool {
        false
    }

    /// Reads the regular files at `path` in a container (a file, or every
    /// file under a directory), each with its path relative to `path`'s
    /// parent; at most `max_bytes` of content in all, else an error.
    async fn read_files(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>>;

    /// Whether a container runs, read from the container itself (on Docker
    /// this also waits until the engine has finished booking an exit).
    async fn is_running(&self, id: &str) -> Result<bool>;

    /// The host port the engine bound for `container_port` of a container.
    async fn published_port(&self, id: &str, container_port: u16) -> Result<Option<u16>>;

    /// The engine's events for this instance's containers. The stream ends
    /// or fails when the connection drops; the caller reconnects.
    fn events(&self, instance: &str) -> BoxStream<'static, Result<EngineEvent>>;

    /// The last `tail` log lines of a container (at most a few KiB).
    async fn log_tail(&self, id: &str, tail: usize) -> Result<String>;

    /// A container's log, pulled on demand (a slow reader slows the engine's
    /// sender). A container removed while it is read ends the stream.
    fn logs(&self, id: &str, request: LogRequest) -> BoxStream<'static, Result<LogChunk>>;

    /// Starts `request` in a running container, attached (`dubectl exec`).
    async fn exec_attach(&self, _id: &str, _request: &ExecRequest) -> Result<ExecSession> {
        Err(crate::error::Error::Internal("this engine cannot exec".into()))
    }

    /// Resizes the terminal of an exec started with `tty`.
    async fn exec_resize(&self, _exec: &str, _width: u16, _height: u16) -> Result<()> {
        Ok(())
    }

    /// Whether an exec still runs, and its exit code once it has ended.
    async fn exec_status(&self, _exec: &str) -> Result<ExecStatus> {
        Ok(ExecStatus::default())
    }

    /// A container's exit code, once it has exited (None while it runs).
    async fn exit_code(&self, _id: &str) -> Result<Option<i64>> {
        Ok(None)
    }

    /// A container's exit code and when it finished (Unix seconds, where the
    /// engine says), once it has exited (None while it runs).
    async fn exit_info(&self, id: &str) -> Result<Option<(i64, Option<i64>)>> {
        Ok(self.exit_code(id).await?.map(|code| (code, None)))
    }
}

/// A command to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments (no shell).
    pub cmd: Vec<String>,
    /// With a terminal (stdout and stderr are one stream).
    pub tty: bool,
    /// Attach its standard input.
    pub stdin: bool,
    /// `KEY=value` pairs added to its env (the server's marker, see `orchestrator/exec.rs`).
    pub env: Vec<String>,
}

/// An exec started and attached: its output, and its input.
pub struct ExecSession {
    /// The engine's id of the exec (for [`Engine::exec_resize`] and [`Engine::exec_status`]).
    pub id: String,
    /// Its output (with a terminal: all of it as `Stdout`); ends when it exits.
    pub output: BoxStream<'static, Result<LogChunk>>,
    /// Its standard input (shut down: end of input).
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the engine says of an exec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStatus {
    /// It still runs.
    pub running: bool,
    /// Its exit code, once it has ended.
    pub exit_code: Option<i64>,
}

/// How the host reaches addresses on the engine's networks.
#[async_trait]
pub trait Network: Send + Sync + std::fmt::Debug {
    /// Opens (and closes) a TCP connection.
    async fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<()>;

    /// GETs `path` with a `Host` header over a fresh connection; the status and body.
    async fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)>;
}

/// Runs `connect` with a deadline; a late answer is a `TimedOut` error.
pub(crate) async fn within<T>(
    timeout: Duration,
    connect: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(timeout, connect).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))
    })
}

/// The host's own sockets: what a real engine's bridge networks need.
#[derive(Debug, Default)]
pub(crate) struct HostNetwork;

#[async_trait]
impl Network for HostNetwork {
    async fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
        within(timeout, tokio::net::TcpStream::connect(addr)).await.map(|_| ())
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        crate::http_check::http_get(addr, path, host, timeout).await
    }
}

/// The env of a container: its own, then what it takes from secrets.
pub(super) fn env_of(spec: &ContainerSpec) -> Option<Vec<String>> {
    let env: Vec<String> = spec.env.iter().chain(spec.secrets.env.iter()).cloned().collect();
    (!env.is_empty()).then_some(env)
}
