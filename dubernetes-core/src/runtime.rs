//! The Docker engine, through bollard: the only place that talks to it.
//!
//! Every call has a deadline. Every container we create carries labels that
//! make it self-describing (instance, pod, revision), so the controller
//! learns what runs by listing containers, never from rows it wrote earlier.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, EventMessage, HostConfig, HostConfigLogConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::ownership::Ownership;

/// Label: the instance a container belongs to.
pub const LABEL_INSTANCE: &str = "io.dubernetes.instance";
/// Label: the pod a replica belongs to.
pub const LABEL_POD: &str = "io.dubernetes.pod";
/// Label: the revision hash of the spec a replica runs.
pub const LABEL_REVISION: &str = "io.dubernetes.revision";
/// Label: `replica` or `ingress`.
pub const LABEL_ROLE: &str = "io.dubernetes.role";
/// Label: the container port a replica listens on.
pub const LABEL_PORT: &str = "io.dubernetes.port";
/// Label: hash of the ingress container's own settings (image, listen address).
pub const LABEL_INGRESS_CONFIG: &str = "io.dubernetes.ingress-config";

const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of a crashed replica's last log lines kept for its status and event.
pub(crate) const LOG_TAIL_BYTES: usize = 4 * 1024;
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

pub use dubernetes_api::ContainerState;

/// The engine's word for a container's state as a [`ContainerState`].
fn container_state(state: Option<ContainerSummaryStateEnum>) -> ContainerState {
    match state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::EXITED) => ContainerState::Exited,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        _ => ContainerState::Unknown,
    }
}

/// A container of this instance, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub id: String,
    pub name: String,
    pub role: String,
    pub pod: Option<String>,
    pub revision: Option<String>,
    pub state: ContainerState,
    /// The engine's status text, e.g. `Exited (1) 3 seconds ago`.
    pub status: String,
    /// Address on the instance network.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created: i64,
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

pub use dubernetes_api::limits::{ContainerLimits, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT};

/// Writes [`ContainerLimits`] into a container's host config (the limits are
/// engine-neutral data in `dubernetes-api`; this is Docker's reading of them).
pub(crate) trait HostLimits {
    /// Writes these limits into a container's host config.
    fn apply(&self, host: &mut HostConfig);
}

impl HostLimits for ContainerLimits {
    fn apply(&self, host: &mut HostConfig) {
        host.log_config = Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), self.log_max_bytes.to_string()),
                ("max-file".to_string(), self.log_max_files.to_string()),
            ])),
        });
        // The engine reads 0 or -1 as "no limit".
        host.pids_limit = Some(self.pids.map_or(-1, i64::from));
        if self.no_new_privileges {
            host.security_opt
                .get_or_insert_with(Vec::new)
                .push("no-new-privileges:true".into());
        }
    }
}

/// What a replica container runs.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaTemplate {
    pub name: String,
    pub image: String,
    pub port: u16,
    pub env: Vec<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub labels: HashMap<String, String>,
    pub network: String,
    pub limits: ContainerLimits,
}

/// The Docker engine, seen through this store's ownership: every container
/// it creates carries the store's labels, and [`list`](Runtime::list) shows
/// only the containers the store manages.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    docker: Docker,
    ownership: Arc<Ownership>,
}

/// Which containers of the instance a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Those the controller manages (ours and adopted).
    Managed,
    /// Everything the store owns, held adoptions included (for a purge).
    Owned,
    /// Every container of the instance, whoever owns it (the start-up check).
    All,
}

async fn bounded<T>(what: &str, limit: Duration, call: impl Future<Output = Result<T, DockerError>>) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Docker {
            context: what.to_string(),
            source,
        }),
        Err(_) => Err(Error::DockerTimeout(what.to_string())),
    }
}

pub(crate) fn is_not_found(e: &Error) -> bool {
    matches!(
        e,
        Error::Docker {
            source: DockerError::DockerResponseServerError { status_code: 404, .. },
            ..
        }
    )
}

fn is_status(e: &Error, code: u16) -> bool {
    matches!(e, Error::Docker { source: DockerError::DockerResponseServerError { status_code, .. }, .. } if *status_code == code)
}

impl Runtime {
    /// Connects as the docker CLI would (`DOCKER_HOST` or the local socket) and
    /// negotiates the API version with the engine.
    pub(crate) async fn connect(ownership: Arc<Ownership>) -> Result<Runtime> {
        let docker = Docker::connect_with_defaults().map_err(|source| Error::Docker {
            context: "connecting to the Docker engine (is DOCKER_HOST right?)".into(),
            source,
        })?;
        let docker = bounded("negotiating the API version", CALL_TIMEOUT, docker.negotiate_version()).await?;
        bounded("pinging the engine", CALL_TIMEOUT, docker.ping()).await?;
        Ok(Runtime { docker, ownership })
    }

    /// The ownership rule this runtime applies.
    pub(crate) fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// The API version in use after negotiation.
    pub(crate) fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Creates the instance's bridge network if it is missing.
    pub(crate) async fn ensure_network(&self, name: &str, instance: &str) -> Result<()> {
        match bounded(
            "inspecting network",
            CALL_TIMEOUT,
            self.docker
                .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(LABEL_INSTANCE.to_string(), instance.to_string())])),
            ..Default::default()
        };
        match bounded("creating network", CALL_TIMEOUT, self.docker.create_network(request)).await {
            Ok(_) => Ok(()),
            // Another server of the same instance won the race.
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes a network; a missing one is fine.
    pub(crate) async fn remove_network(&self, name: &str) -> Result<()> {
        match bounded("removing network", CALL_TIMEOUT, self.docker.remove_network(name)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Lists the containers of this instance (all states) that this store
    /// manages, optionally of one pod only. Containers of the instance that
    /// belong to another store are left out (and logged once each): the
    /// controller never plans, stops, removes or routes them.
    pub(crate) async fn list(&self, instance: &str, network: &str, pod: Option<&str>) -> Result<Vec<Observed>> {
        self.list_scoped(instance, network, pod, Scope::Managed).await
    }

    /// Every container of this instance this store owns, held adoptions included.
    pub(crate) async fn list_owned(&self, instance: &str, network: &str) -> Result<Vec<Observed>> {
        self.list_scoped(instance, network, None, Scope::Owned).await
    }

    /// Every container of this instance, whoever owns it (the start-up check).
    pub(crate) async fn list_all(&self, instance: &str, network: &str) -> Result<Vec<Observed>> {
        self.list_scoped(instance, network, None, Scope::All).await
    }

    async fn list_scoped(
        &self,
        instance: &str,
        network: &str,
        pod: Option<&str>,
        scope: Scope,
    ) -> Result<Vec<Observed>> {
        let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
        if let Some(pod) = pod {
            labels.push(format!("{LABEL_POD}={pod}"));
        }
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let summaries = bounded(
            "listing containers",
            CALL_TIMEOUT,
            self.docker.list_containers(Some(options)),
        )
        .await?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                let id = s.id?;
                let visible = match scope {
                    Scope::All => true,
                    Scope::Owned => self.ownership.owns(&id, &labels),
                    Scope::Managed => self.ownership.manages(&id, &labels),
                };
                if !visible {
                    if !self.ownership.owns(&id, &labels) && self.ownership.note_foreign(&id) {
                        tracing::warn!(
                            container = %id,
                            store = labels.get(crate::ownership::LABEL_STORE).map_or("(none)", String::as_str),
                            data_dir = labels.get(crate::ownership::LABEL_DATA_DIR).map_or("(unknown)", String::as_str),
                            "a container of this instance belongs to another store; it is left alone"
                        );
                    }
                    return None;
                }
                let ip = s
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|mut n| n.remove(network))
                    .and_then(|e| e.ip_address)
                    .filter(|ip| !ip.is_empty());
                Some(Observed {
                    id,
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    role: labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
                    pod: labels.get(LABEL_POD).cloned(),
                    revision: labels.get(LABEL_REVISION).cloned(),
                    state: container_state(s.state),
                    status: s.status.unwrap_or_default(),
                    ip,
                    created: s.created.unwrap_or(0),
                    labels,
                    ready: false,
                })
            })
            .collect())
    }

    /// Makes sure `image` is present, pulling it when it is not.
    pub(crate) async fn ensure_image(&self, image: &str) -> Result<()> {
        match bounded("inspecting image", CALL_TIMEOUT, self.docker.inspect_image(image)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let pull = self
            .docker
            .create_image(Some(options), None, None)
            .try_collect::<Vec<_>>();
        bounded(
            &format!(
                "pulling image {image} (no such image locally; build or load it, or check the name and the registry)"
            ),
            PULL_TIMEOUT,
            pull,
        )
        .await
        .map(|_| ())
    }

    /// Creates and starts a replica. It publishes no host port: it joins the
    /// instance network, where the ingress reaches it by address.
    pub(crate) async fn create_replica(&self, template: &ReplicaTemplate) -> Result<String> {
        let mut host_config = HostConfig {
            network_mode: Some(template.network.clone()),
            memory: template.memory.and_then(|m| i64::try_from(m).ok()),
            nano_cpus: template.cpus.map(|c| (c * 1e9) as i64),
            ..Default::default()
        };
        template.limits.apply(&mut host_config);
        let body = ContainerCreateBody {
            image: Some(template.image.clone()),
            env: Some(template.env.clone()),
            labels: Some(template.labels.clone()),
            exposed_ports: Some(vec![format!("{}/tcp", template.port)]),
            entrypoint: template.command.clone(),
            cmd: template.args.clone(),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(template.network.clone(), EndpointSettings::default())])),
            }),
            ..Default::default()
        };
        self.create_and_start(&template.name, body).await
    }

    /// Creates a container from a body and starts it; returns its id.
    pub(crate) async fn create_and_start(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let id = self.create(name, body).await?;
        self.start(&id).await?;
        Ok(id)
    }

    /// Creates a container without starting it; returns its id. Every
    /// container gets this store's labels here, so none can be made without them.
    pub(crate) async fn create(&self, name: &str, mut body: ContainerCreateBody) -> Result<String> {
        body.labels
            .get_or_insert_with(HashMap::new)
            .extend(self.ownership.labels());
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = bounded(
            "creating container",
            CALL_TIMEOUT,
            self.docker.create_container(Some(options), body),
        )
        .await?;
        Ok(created.id)
    }

    /// Starts a container; "already started" is success.
    pub(crate) async fn start(&self, id: &str) -> Result<()> {
        match bounded(
            "starting container",
            CALL_TIMEOUT,
            self.docker
                .start_container(id, None::<bollard::query_parameters::StartContainerOptions>),
        )
        .await
        {
            Err(e) if is_status(&e, 304) => Ok(()),
            other => other,
        }
    }

    /// Stops a container: its stop signal (SIGTERM unless the image says
    /// otherwise), then SIGKILL after `grace`; a missing or stopped one is fine.
    ///
    /// The engine waits the grace period itself while this request is open,
    /// so callers make it without holding an engine slot: waiting for a slow
    /// replica must not stop other pods' calls. bollard's client timeout
    /// (120 s) would cut a longer wait short, so this one call gets its own,
    /// the grace period plus [`CALL_TIMEOUT`].
    pub(crate) async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let limit = grace + CALL_TIMEOUT;
        let docker = self.docker.clone().with_timeout(limit);
        let stop = docker.stop_container(id, Some(StopContainerOptionsBuilder::new().t(secs).build()));
        match bounded("stopping container", limit, stop).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_status(&e, 304) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes a container at once (killing it if it runs); a missing one is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match bounded(
            "removing container",
            CALL_TIMEOUT,
            self.docker.remove_container(id, Some(options)),
        )
        .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            // Removal already in progress.
            Err(e) if is_status(&e, 409) => Ok(()),
            other => other,
        }
    }

    /// Sends a signal (e.g. `HUP`) to a container's main process.
    pub(crate) async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        bounded(
            "signalling container",
            CALL_TIMEOUT,
            self.docker.kill_container(id, Some(options)),
        )
        .await
    }

    /// Runs a command in a container; returns its exit code and combined output.
    pub(crate) async fn exec(&self, container: &str, cmd: &[&str]) -> Result<(i64, String)> {
        let config = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = bounded(
            "creating exec",
            CALL_TIMEOUT,
            self.docker.create_exec(container, config),
        )
        .await?;
        let run = async {
            let mut out = String::new();
            if let StartExecResults::Attached { mut output, .. } = self.docker.start_exec(&exec.id, None).await? {
                while let Some(chunk) = output.next().await {
                    out.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
                }
            }
            Ok(out)
        };
        let output = bounded("running exec", CALL_TIMEOUT, run).await?;
        let inspect = bounded("inspecting exec", CALL_TIMEOUT, self.docker.inspect_exec(&exec.id)).await?;
        Ok((inspect.exit_code.unwrap_or(-1), output))
    }

    /// Writes one file into a container (created or running) through the archive API.
    pub(crate) async fn write_file(&self, container: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(crate::store::now_ms() as u64 / 1000);
        let mut builder = tar::Builder::new(Vec::new());
        let upload = builder
            .append_data(&mut header, file, content)
            .and_then(|_| builder.into_inner())
            .map_err(|e| Error::Ingress(format!("building archive: {e}")))
            .map(bytes::Bytes::from)
            .map(|tar| (tar, UploadToContainerOptionsBuilder::new().path(dir).build()))
            .map(|(tar, options)| {
                self.docker
                    .upload_to_container(container, Some(options), bollard::body_full(tar))
            })?;
        bounded(&format!("writing {dir}/{file}"), CALL_TIMEOUT, upload).await
    }

    /// The engine's event stream for this instance's containers.
    pub(crate) fn events(&self, instance: &str) -> impl Stream<Item = Result<EventMessage, DockerError>> + use<> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![format!("{LABEL_INSTANCE}={instance}")]),
        ]);
        self.docker
            .events(Some(EventsOptionsBuilder::new().filters(&filters).build()))
    }

    /// The last `tail` log lines of a container (stdout and stderr), at most
    /// [`LOG_TAIL_BYTES`] of them.
    pub(crate) async fn log_tail(&self, id: &str, tail: usize) -> Result<String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        // Only the last LOG_TAIL_BYTES are kept, whatever the lines' length
        // (a replica may write one huge line): the tail goes into statuses and events.
        let logs = self
            .docker
            .logs(id, Some(options))
            .try_fold(Vec::new(), |mut tail, chunk| {
                tail.extend_from_slice(&chunk.into_bytes());
                if tail.len() > 2 * LOG_TAIL_BYTES {
                    tail.drain(..tail.len() - LOG_TAIL_BYTES);
                }
                futures::future::ready(Ok(tail))
            });
        let mut tail = bounded("reading logs", CALL_TIMEOUT, logs).await?;
        if tail.len() > LOG_TAIL_BYTES {
            tail.drain(..tail.len() - LOG_TAIL_BYTES);
        }
        Ok(String::from_utf8_lossy(&tail).into_owned())
    }

    /// A container's log as a stream of chunks (stdout and stderr), optionally
    /// following it. `tail`: only the last lines; `since`: Unix seconds.
    /// The stream is pulled on demand, so a slow reader slows the engine's
    /// sender instead of filling memory.
    pub(crate) fn log_stream(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
        since: Option<i64>,
    ) -> impl Stream<Item = Result<bollard::container::LogOutput, DockerError>> + use<> {
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let mut options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail);
        if let Some(since) = since {
            options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        self.docker.logs(id, Some(options.build()))
    }

    /// Publishes `container_port/tcp` of an ingress on `host_ip:host_port`.
    pub(crate) fn port_bindings(
        container_port: u16,
        host_ip: &str,
        host_port: u16,
    ) -> HashMap<String, Option<Vec<PortBinding>>> {
        HashMap::from([(
            format!("{container_port}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some(host_ip.to_string()),
                host_port: Some(if host_port == 0 {
                    String::new()
                } else {
                    host_port.to_string()
                }),
            }]),
        )])
    }

    /// Whether a container runs, read from the container itself (not the list view).
    pub(crate) async fn inspect_state(&self, id: &str) -> Result<bool> {
        let inspect = bounded(
            "inspecting container",
            CALL_TIMEOUT,
            self.docker
                .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>),
        )
        .await?;
        Ok(inspect.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// The host port the engine bound for `container_port/tcp` of a container.
    pub(crate) async fn published_port(&self, container: &str, container_port: u16) -> Result<Option<u16>> {
        let inspect = bounded(
            "inspecting container",
            CALL_TIMEOUT,
            self.docker
                .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>),
        )
        .await?;
        Ok(inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(&format!("{container_port}/tcp")))
            .flatten()
            .and_then(|b| b.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok()))))
    }
}
