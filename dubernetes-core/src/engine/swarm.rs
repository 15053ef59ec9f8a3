//! [`Engine`] for Docker Swarm mode, through bollard (with `docker.rs`, the
//! only file that names a bollard type).
//!
//! **One Swarm service per replica.** A replica the controller creates is a
//! service with `replicas: 1`, restart condition `none`, DNS round-robin
//! endpoint (no virtual IP) and the replica's labels on the service and on its
//! task's container. So the controller above stays exactly as on one engine:
//! its slots, readiness gates, drain, crash-loop back-off, max surge and max
//! unavailable work on services as they work on containers, and Swarm only
//! places tasks on nodes. Swarm's own rolling update and one-level rollback
//! (moby#37972, #26672, #34245) are never used: a rollout is new services and
//! deleted ones, decided by our controller. A task that exits, or is lost
//! with its node, is not restarted by Swarm (`none`); our controller sees its
//! service exited and replaces it with a new one, placed on any node.
//!
//! What is not a replica stays a plain container on this engine: the nginx
//! ingress (Swarm-published ports cannot bind loopback) and the probe agent
//! ([`ProbeNetwork`]), both attached to the instance's attachable overlay
//! network. Ids tell them apart: a container id is 64 hex digits, a service
//! id is not.
//!
//! No registry: a replica's image is given to Swarm by its local image id when
//! the manager has the image (Swarm then pulls nothing), else by the
//! reference as written (each node must have it, or pull it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, LocalNodeState, Mount, MountType, NetworkAttachmentConfig,
    NetworkCreateRequest, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecDnsConfig, TaskSpecLogDriver, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    InspectNetworkOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateServiceOptionsBuilder,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::docker::{
    CALL_TIMEOUT, DockerEngine, LABEL_SWARM_SERVICE, bounded, create_network_with_names, log_chunks, log_options,
    ok_unless, read_tail, settle_duplicates, tail_options,
};
use super::{
    Backend, ContainerLimits, ContainerSpec, ContainerState, Engine, EngineEvent, HostNetwork, LogChunk, LogRequest,
    Network, Observed,
};
use crate::error::{Error, Result};
use crate::runtime::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};

/// Label on a replica's service: the image reference the user wrote (the
/// task runs the image id it resolved to).
pub const LABEL_IMAGE: &str = "io.dubernetes.image";
/// Label on a replica's service: when it was created, in Unix seconds.
const LABEL_CREATED: &str = "io.dubernetes.created";
/// The role label of the probe agent.
const ROLE_PROBE: &str = "probe";
/// The image of the probe agent (a SOCKS5 proxy on the overlay network).
pub const DEFAULT_PROBE_IMAGE: &str = "dubernetes/probe:local";
/// The port the probe agent listens on inside its container.
const PROBE_PORT: u16 = 1080;
/// How long a stop waits past its grace period for the task to be down.
const STOP_SLACK: Duration = Duration::from_secs(30);
/// How long [`Engine::is_running`] waits for Swarm to book a task's exit
/// that its container already shows.
const EXIT_BOOKING: Duration = Duration::from_secs(5);
/// How long a network removal waits for the endpoints of deleted services to go.
const NETWORK_DRAIN: Duration = Duration::from_secs(20);
/// Least time between two attempts to repair a probe agent that does not answer.
const PROBE_REPAIR_EVERY: Duration = Duration::from_secs(5);
/// How long a new probe agent has to answer.
const PROBE_START: Duration = Duration::from_secs(10);
/// Most retries of an update refused for an outdated version index.
const UPDATE_RETRIES: u32 = 5;
/// How long a delete waits for Swarm's task reaper (see `wait_reaped`).
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Docker Swarm mode, as an [`Engine`]: replicas are services, the ingress and
/// the probe agent are containers of the local engine.
#[derive(Debug, Clone)]
pub(crate) struct SwarmEngine {
    docker: Docker,
    inner: DockerEngine,
    probe: Arc<ProbeNetwork>,
}

fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl SwarmEngine {
    /// Connects like [`DockerEngine::connect`] and checks that the engine is
    /// a swarm manager, or says how to make it one.
    pub(crate) async fn connect() -> Result<SwarmEngine> {
        let inner = DockerEngine::connect().await?;
        let docker = inner.client().clone();
        let info = bounded("reading the engine's info", CALL_TIMEOUT, docker.info()).await?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            let why = match state {
                LocalNodeState::ACTIVE => "this engine is a swarm worker, not a manager".to_string(),
                LocalNodeState::EMPTY => "this engine's swarm state is unknown".to_string(),
                other => format!("this engine's swarm state is `{other}`"),
            };
            return Err(Error::NotSwarmManager(why));
        }
        let probe = Arc::new(ProbeNetwork::new(inner.clone()));
        Ok(SwarmEngine { docker, inner, probe })
    }

    async fn inspect_service(&self, id: &str) -> Result<Option<bollard::models::Service>, Error> {
        match bounded(
            "inspecting service",
            CALL_TIMEOUT,
            self.docker
                .inspect_service(id, None::<bollard::query_parameters::InspectServiceOptions>),
        )
        .await
        {
            Ok(s) => Ok(Some(s)),
            Err(r) if r.status() == Some(404) => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    /// Changes a service's spec: read, change, send back with the version
    /// index; a refusal for an outdated index (another update won) is
    /// retried. Returns false if the service is gone.
    async fn update_service(&self, id: &str, change: impl Fn(&mut ServiceSpec) -> bool) -> Result<bool> {
        for attempt in 0..=UPDATE_RETRIES {
            let Some(service) = self.inspect_service(id).await? else {
                return Ok(false);
            };
            let mut spec = service.spec.unwrap_or_default();
            if !change(&mut spec) {
                return Ok(true);
            }
            let version = service.version.and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptionsBuilder::new()
                .version(i32::try_from(version).unwrap_or(i32::MAX))
                .build();
            match bounded(
                "updating service",
                CALL_TIMEOUT,
                self.docker.update_service(id, spec, options, None),
            )
            .await
            {
                Ok(_) => return Ok(true),
                Err(r) if r.status() == Some(404) => return Ok(false),
                // "update out of sequence": someone else changed it first.
                Err(r) if attempt < UPDATE_RETRIES && matches!(r.status(), Some(500 | 409)) => {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
                }
                Err(r) => return Err(r.into()),
            }
        }
        Ok(true)
    }

    /// The tasks of a service, newest first.
    async fn tasks_of(&self, service: &str) -> Result<Vec<Task>> {
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        let mut tasks = match bounded("listing tasks", CALL_TIMEOUT, self.docker.list_tasks(Some(options))).await {
            Ok(t) => t,
            Err(r) if r.status() == Some(404) => Vec::new(),
            Err(r) => return Err(r.into()),
        };
        tasks.sort_by_key(|t| std::cmp::Reverse(task_order(t)));
        Ok(tasks)
    }

    /// The local container of a service's newest task.
    async fn container_of(&self, id: &str) -> Result<String> {
        if is_container_id(id) {
            return Ok(id.to_string());
        }
        self.tasks_of(id)
            .await?
            .into_iter()
            .find_map(|t| t.status?.container_status?.container_id.filter(|c| !c.is_empty()))
            .ok_or_else(|| Error::Docker {
                context: format!("service {id}"),
                source: "it has no task container yet".into(),
            })
    }

    /// Task addresses on `network` by service name (every node), and
    /// addresses of this node's containers by container id.
    async fn addresses(&self, network: &str) -> Result<(HashMap<String, String>, HashMap<String, String>)> {
        let options = InspectNetworkOptionsBuilder::new().verbose(true).build();
        let inspect = match bounded(
            "inspecting network",
            CALL_TIMEOUT,
            self.docker.inspect_network(network, Some(options)),
        )
        .await
        {
            Ok(n) => n,
            Err(r) if r.status() == Some(404) => return Ok(Default::default()),
            Err(r) => return Err(r.into()),
        };
        let by_service = inspect
            .services
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, s)| {
                let ip = s["Tasks"]
                    .as_array()?
                    .iter()
                    .find_map(|t| t["EndpointIP"].as_str().filter(|ip| !ip.is_empty()))?;
                Some((name, ip.to_string()))
            })
            .collect();
        let by_container = inspect
            .containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, e)| {
                let ip = e.ipv4_address?;
                Some((id, ip.split('/').next()?.to_string()))
            })
            .collect();
        Ok((by_service, by_container))
    }

    fn service_spec(&self, spec: &ContainerSpec, image: String) -> ServiceSpec {
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_IMAGE.to_string(), spec.image.clone());
        labels.insert(LABEL_CREATED.to_string(), (crate::store::now_ms() / 1000).to_string());
        let limits: &ContainerLimits = &spec.limits;
        ServiceSpec {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image),
                    labels: Some(spec.labels.clone()),
                    command: spec.command.clone(),
                    args: spec.args.clone(),
                    env: super::env_of(spec),
                    // Secret files: the server's directories, bound read-only
                    // (resolved by the server as on the docker backend). A named
                    // volume is local to the node that runs the task: made
                    // there, with its labels, when the task starts.
                    mounts: {
                        let mut mounts: Vec<Mount> = spec
                            .secrets
                            .files
                            .iter()
                            .map(|b| Mount {
                                target: Some(b.container.clone()),
                                source: Some(b.host.display().to_string()),
                                typ: Some(MountType::BIND),
                                read_only: Some(true),
                                ..Default::default()
                            })
                            .collect();
                        mounts.extend(super::docker::mounts_of(spec).unwrap_or_default());
                        (!mounts.is_empty()).then_some(mounts)
                    },
                    // The embedded DNS of the task's container forwards
                    // what it does not know (pod names) to these.
                    dns_config: (!spec.dns.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
                        nameservers: Some(spec.dns.iter().map(ToString::to_string).collect()),
                        ..Default::default()
                    }),
                    // A removal kills at once (as `docker rm -f`); a stop
                    // sets the pod's grace period first.
                    stop_grace_period: Some(0),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                        memory_bytes: spec.memory.and_then(|m| i64::try_from(m).ok()),
                        pids: limits.pids.map(i64::from),
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(spec.network.clone()),
                    ..Default::default()
                }]),
                log_driver: Some(TaskSpecLogDriver {
                    name: Some("json-file".into()),
                    options: Some(HashMap::from([
                        ("max-size".to_string(), limits.log_max_bytes.to_string()),
                        ("max-file".to_string(), limits.log_max_files.to_string()),
                    ])),
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: None,
            }),
            ..Default::default()
        }
    }

    /// Waits until no task of a service runs (or the deadline).
    async fn wait_down(&self, id: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.tasks_of(id).await?;
            if !tasks
                .iter()
                .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::DockerTimeout(format!("stopping service {id}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until Swarm's task reaper is done with the service's tasks that
    /// were marked for removal (a stop scales the service to 0, which marks
    /// its task so; the reaper deletes it shortly after it shut down).
    ///
    /// Docker 20.10's swarmkit crashes the whole engine (a nil pointer in
    /// `SetServiceTasksRemove`, fixed in later swarmkit) when a service is
    /// deleted while the reaper deletes one of its tasks: seen here when a
    /// delete followed a stop at once. So a delete waits for the reaper; if it
    /// is not done by `limit`, the delete fails and the controller retries it
    /// later, rather than risk the engine every replica runs on.
    async fn wait_reaped(&self, id: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.tasks_of(id).await?;
            if !tasks.iter().any(|t| t.desired_state == Some(TaskState::REMOVE)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::DockerTimeout(format!(
                    "removing service {id}: Swarm has not reaped its stopped task yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Newest task first: the highest version index (the store's index grows
/// with every write). Creation times are not read: their type changes with
/// bollard's features.
fn task_order(t: &Task) -> u64 {
    t.version.as_ref().and_then(|v| v.index).unwrap_or(0)
}

/// A service's state, read from its newest task.
fn task_state(task: Option<&Task>) -> (ContainerState, String) {
    let Some(status) = task.and_then(|t| t.status.as_ref()) else {
        return (ContainerState::Created, "Created (no task yet)".into());
    };
    let state = status.state.unwrap_or(TaskState::NEW);
    let message = status
        .err
        .clone()
        .or_else(|| status.message.clone())
        .unwrap_or_default();
    match state {
        TaskState::RUNNING => (ContainerState::Running, format!("Up (task {state}: {message})")),
        TaskState::COMPLETE
        | TaskState::FAILED
        | TaskState::SHUTDOWN
        | TaskState::REJECTED
        | TaskState::ORPHANED
        | TaskState::REMOVE => {
            let code = status.container_status.as_ref().and_then(|c| c.exit_code).unwrap_or(-1);
            (
                ContainerState::Exited,
                format!("Exited ({code}) task {state}: {message}"),
            )
        }
        _ => (ContainerState::Created, format!("Created (task {state}: {message})")),
    }
}

#[async_trait]
impl Engine for SwarmEngine {
    fn api_version(&self) -> String {
        self.inner.api_version()
    }

    fn backend(&self) -> Backend {
        Backend::Swarm
    }

    async fn reconnect(&self) -> Result<Arc<dyn Engine>> {
        Ok(Arc::new(SwarmEngine::connect().await?))
    }

    fn network(&self) -> Arc<dyn Network> {
        Arc::clone(&self.probe) as Arc<dyn Network>
    }

    /// An attachable overlay network (replicas' tasks, the ingress and the
    /// probe agent join it), then the probe agent on it.
    async fn ensure_network(&self, name: &str, instance: &str) -> Result<()> {
        settle_duplicates(&self.docker, name, instance).await?;
        let inspect = bounded(
            "inspecting network",
            CALL_TIMEOUT,
            self.docker
                .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>),
        )
        .await;
        match inspect {
            Ok(n) if n.driver.as_deref() == Some("overlay") => {}
            Ok(n) => {
                return Err(Error::Docker {
                    context: format!("network {name}"),
                    source: format!(
                        "it exists as a {} network (made by the docker backend?): the swarm backend needs an \
                         overlay network; stop that instance and remove the network, or use another --instance",
                        n.driver.unwrap_or_default()
                    )
                    .into(),
                });
            }
            Err(r) if r.status() == Some(404) => {
                let request = NetworkCreateRequest {
                    name: name.to_string(),
                    driver: Some("overlay".into()),
                    attachable: Some(true),
                    labels: Some(HashMap::from([(LABEL_INSTANCE.to_string(), instance.to_string())])),
                    ..Default::default()
                };
                create_network_with_names(&self.docker, request).await?;
            }
            Err(r) => return Err(r.into()),
        }
        // Docker 20.10 can answer a start on an attachable overlay with
        // "network ... not found" for a moment after another container left
        // it on this node (its local attachment is being torn down, e.g. the
        // old probe agent just removed after a kill -9 of the server): retried,
        // bounded.
        let mut attempt = 0u32;
        loop {
            match self.probe.start(name, instance).await {
                Err(e) if attempt < OVERLAY_RETRIES && is_network_not_found(&e) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "the overlay is not attachable yet; retrying the probe agent");
                    tokio::time::sleep(Duration::from_millis(250) * attempt).await;
                }
                result => return result,
            }
        }
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.probe.stop(name).await?;
        // The tasks of just deleted services leave the network a moment later.
        let deadline = Instant::now() + NETWORK_DRAIN;
        loop {
            match ok_unless(
                bounded("removing network", CALL_TIMEOUT, self.docker.remove_network(name)).await,
                &[404],
            ) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// As on Docker: the overlay's subnet reserves the responder's address.
    async fn names_address(&self, network: &str) -> Result<Option<std::net::IpAddr>> {
        self.inner.names_address(network).await
    }

    async fn list(&self, instance: &str, network: &str, pod: Option<&str>) -> Result<Vec<Observed>> {
        let mut labels = vec![format!("{LABEL_INSTANCE}={instance}")];
        if let Some(pod) = pod {
            labels.push(format!("{LABEL_POD}={pod}"));
        }
        let filters = HashMap::from([("label", labels.clone())]);
        let options = ListServicesOptionsBuilder::new().filters(&filters).build();
        let services = bounded(
            "listing services",
            CALL_TIMEOUT,
            self.docker.list_services(Some(options)),
        )
        .await?;
        // Plain containers of the instance (the ingress), not task containers or the probe.
        let mut out: Vec<Observed> = self
            .inner
            .list(instance, network, pod)
            .await?
            .into_iter()
            .filter(|c| !c.labels.contains_key(LABEL_SWARM_SERVICE) && c.role != ROLE_PROBE)
            .collect();
        if services.is_empty() {
            return Ok(out);
        }
        let task_filters = HashMap::from([("label", labels)]);
        let options = ListTasksOptionsBuilder::new().filters(&task_filters).build();
        let tasks = bounded("listing tasks", CALL_TIMEOUT, self.docker.list_tasks(Some(options))).await?;
        let mut newest: HashMap<String, Task> = HashMap::new();
        for t in tasks {
            let Some(service) = t.service_id.clone() else { continue };
            match newest.get(&service) {
                Some(seen) if task_order(seen) >= task_order(&t) => {}
                _ => {
                    newest.insert(service, t);
                }
            }
        }
        let (by_service, by_container) = self.addresses(network).await?;
        // A task on a node Swarm has marked down (or unknown, disconnected)
        // reads as exited: with restart condition `none`, Swarm keeps it
        // "running" for good, and our controller replaces it elsewhere.
        let lost_nodes: std::collections::HashSet<String> = bounded(
            "listing nodes",
            CALL_TIMEOUT,
            self.docker
                .list_nodes(None::<bollard::query_parameters::ListNodesOptions>),
        )
        .await?
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.state)
                .is_some_and(|s| s != bollard::models::NodeState::READY)
        })
        .filter_map(|n| n.id)
        .collect();
        for s in services {
            let Some(id) = s.id else { continue };
            let spec = s.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_default();
            let labels = spec.labels.unwrap_or_default();
            let task = newest.get(&id);
            let (state, status) = match task
                .and_then(|t| t.node_id.as_ref())
                .filter(|n| lost_nodes.contains(*n))
            {
                Some(node) if task_state(task).0 == ContainerState::Running => {
                    (ContainerState::Exited, format!("Exited (-1) its node {node} is lost"))
                }
                _ => task_state(task),
            };
            let container = task
                .and_then(|t| t.status.as_ref())
                .and_then(|s| s.container_status.as_ref())
                .and_then(|c| c.container_id.clone());
            let ip = (state == ContainerState::Running)
                .then(|| {
                    by_service
                        .get(&name)
                        .or_else(|| container.as_ref().and_then(|c| by_container.get(c)))
                        .cloned()
                })
                .flatten();
            out.push(Observed {
                id,
                name,
                role: labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
                pod: labels.get(LABEL_POD).cloned(),
                revision: labels.get(LABEL_REVISION).cloned(),
                state,
                status,
                ip,
                created: labels.get(LABEL_CREATED).and_then(|c| c.parse().ok()).unwrap_or(0),
                labels,
                ready: false,
            });
        }
        Ok(out)
    }

    async fn ensure_image(&self, image: &str, pull: &super::Pull) -> Result<()> {
        self.inner.ensure_image(image, pull).await
    }

    // Volumes are the manager's own (this engine's): where a task of another
    // node mounts one, that node's engine makes it (see `service_spec`).
    async fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<super::VolumeInfo> {
        self.inner.ensure_volume(name, labels).await
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<super::VolumeInfo>> {
        self.inner.inspect_volume(name).await
    }

    async fn list_volumes(&self, instance: &str, sizes: bool) -> Result<Vec<super::VolumeInfo>> {
        self.inner.list_volumes(instance, sizes).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.inner.remove_volume(name).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        if spec.publish.is_some() || spec.plain {
            return self.inner.create(spec).await;
        }
        // The local image id, so that Swarm looks up no registry.
        let image = match bounded("inspecting image", CALL_TIMEOUT, self.docker.inspect_image(&spec.image)).await {
            Ok(i) => i.id.unwrap_or_else(|| spec.image.clone()),
            Err(r) if r.status() == Some(404) => spec.image.clone(),
            Err(r) => return Err(r.into()),
        };
        let created = bounded(
            "creating service",
            CALL_TIMEOUT,
            // The registry's credentials go with the service, as `--with-registry-auth`.
            self.docker.create_service(
                self.service_spec(spec, image),
                spec.secrets
                    .registry_auth
                    .as_ref()
                    .map(|a| bollard::auth::DockerCredentials {
                        username: Some(a.username.clone()),
                        password: Some(a.password.clone()),
                        serveraddress: Some(a.server.clone()),
                        ..Default::default()
                    }),
            ),
        )
        .await?;
        created.id.ok_or_else(|| Error::Docker {
            context: format!("creating service {}", spec.name),
            source: "the engine returned no service id".into(),
        })
    }

    async fn start(&self, id: &str) -> Result<()> {
        if is_container_id(id) {
            return self.inner.start(id).await;
        }
        let started = self
            .update_service(id, |spec| {
                let replicas = spec
                    .mode
                    .get_or_insert_with(Default::default)
                    .replicated
                    .get_or_insert_with(Default::default);
                let change = replicas.replicas != Some(1);
                replicas.replicas = Some(1);
                change
            })
            .await?;
        if started {
            Ok(())
        } else {
            Err(Error::Docker {
                context: format!("starting service {id}"),
                source: "no such service".into(),
            })
        }
    }

    /// Scales the service to zero with the grace period as its stop grace
    /// (one update), then waits until its task is down.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        if is_container_id(id) {
            return self.inner.stop(id, grace).await;
        }
        let exists = self
            .update_service(id, |spec| {
                if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                    c.stop_grace_period = Some(nanos(grace));
                }
                spec.mode.get_or_insert_with(Default::default).replicated =
                    Some(ServiceSpecModeReplicated { replicas: Some(0) });
                true
            })
            .await?;
        if exists {
            self.wait_down(id, grace + STOP_SLACK).await?;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        if is_container_id(id) {
            return self.inner.remove(id).await;
        }
        self.wait_reaped(id, REAP_WAIT).await?;
        ok_unless(
            bounded("removing service", CALL_TIMEOUT, self.docker.delete_service(id)).await,
            &[404],
        )
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let container = self.container_of(id).await?;
        self.inner.signal(&container, signal).await
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, String)> {
        let container = self.container_of(id).await?;
        self.inner.exec(&container, cmd).await
    }

    async fn write_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        let container = self.container_of(id).await?;
        self.inner.write_file(&container, dir, file, content).await
    }

    /// A private file (mode 0600: a certificate's key) into the container
    /// behind `id` (the ingress, a plain container), as on Docker.
    async fn write_private_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        let container = self.container_of(id).await?;
        self.inner.write_private_file(&container, dir, file, content).await
    }

    /// One archive into the container behind `id`, as on Docker (the
    /// ingress's endpoint files and scripts: their directories are made).
    async fn write_files(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let container = self.container_of(id).await?;
        self.inner.write_files(&container, dir, files).await
    }

    /// The ingress runs as a plain container on this engine: local as the engine is.
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    /// Files of the container behind `id` (the ingress), as on Docker.
    async fn read_files(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let container = self.container_of(id).await?;
        self.inner.read_files(&container, path, max_bytes).await
    }

    /// For a service: whether its newest task runs. When its container on
    /// this node has exited but Swarm has not booked it yet, waits (briefly)
    /// until it has, so a list made after this agrees (as on Docker).
    async fn is_running(&self, id: &str) -> Result<bool> {
        if is_container_id(id) {
            return self.inner.is_running(id).await;
        }
        let deadline = Instant::now() + EXIT_BOOKING;
        loop {
            let tasks = self.tasks_of(id).await?;
            let Some(task) = tasks.first() else { return Ok(false) };
            let (state, _) = task_state(Some(task));
            if state != ContainerState::Running {
                return Ok(false);
            }
            let container = task
                .status
                .as_ref()
                .and_then(|s| s.container_status.as_ref())
                .and_then(|c| c.container_id.clone());
            let container_runs = match container {
                Some(c) => self.inner.is_running(&c).await.unwrap_or(true),
                None => true,
            };
            if container_runs || Instant::now() >= deadline {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn published_port(&self, id: &str, container_port: u16) -> Result<Option<u16>> {
        let container = self.container_of(id).await?;
        self.inner.published_port(&container, container_port).await
    }

    /// The engine's container events (the ingress's, and the task containers'
    /// on this node, which carry the replica's labels), with a task
    /// container's events given its service's id; and a `die` for each task
    /// of another node seen exited in the manager's task list, read every
    /// second while tasks run on other nodes (their container events are on
    /// their own engines; API 1.41 has no task events). The stream ends when
    /// the engine's event stream ends.
    fn events(&self, instance: &str) -> BoxStream<'static, Result<EngineEvent>> {
        let remote = remote_task_exits(self.docker.clone(), instance.to_string()).map(Some);
        let containers = self
            .inner
            .events(instance)
            .filter_map(|event| {
                futures::future::ready(match event {
                    Ok(mut e) => {
                        if e.attributes.get(LABEL_ROLE).map(String::as_str) == Some(ROLE_PROBE) {
                            None
                        } else {
                            if let Some(service) = e.attributes.get(LABEL_SWARM_SERVICE) {
                                e.id = Some(service.clone());
                            }
                            Some(Ok(e))
                        }
                    }
                    Err(e) => Some(Err(e)),
                })
            })
            .map(Some)
            .chain(futures::stream::once(futures::future::ready(None)));
        futures::stream::select(containers, remote)
            .take_while(|e| futures::future::ready(e.is_some()))
            .filter_map(futures::future::ready)
            .boxed()
    }

    /// A service's log through Swarm (from whichever node ran its task).
    async fn log_tail(&self, id: &str, tail: usize) -> Result<String> {
        if is_container_id(id) {
            return self.inner.log_tail(id, tail).await;
        }
        read_tail(self.docker.service_logs(id, Some(tail_options(tail)))).await
    }

    fn logs(&self, id: &str, request: LogRequest) -> BoxStream<'static, Result<LogChunk>> {
        if is_container_id(id) {
            return self.inner.logs(id, request);
        }
        log_chunks(
            self.docker.service_logs(id, Some(log_options(request))),
            format!("reading the log of service {id}"),
        )
    }

    /// In the container of the service's task, on this engine (the task must
    /// run on this node: see docs/api.md for the multi-node limit).
    async fn exec_attach(&self, id: &str, request: &super::ExecRequest) -> Result<super::ExecSession> {
        let container = self.container_of(id).await?;
        self.inner.exec_attach(&container, request).await
    }

    async fn exec_resize(&self, exec: &str, width: u16, height: u16) -> Result<()> {
        self.inner.exec_resize(exec, width, height).await
    }

    async fn exec_status(&self, exec: &str) -> Result<super::ExecStatus> {
        self.inner.exec_status(exec).await
    }

    async fn exit_code(&self, id: &str) -> Result<Option<i64>> {
        let container = self.container_of(id).await?;
        self.inner.exit_code(&container).await
    }

    async fn exit_info(&self, id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let container = self.container_of(id).await?;
        self.inner.exit_info(&container).await
    }
}

/// How often the manager's task list is read for exits of tasks on other
/// nodes while some run there; while none does, every [`REMOTE_IDLE_POLL`].
const REMOTE_EXIT_POLL: Duration = Duration::from_secs(1);
const REMOTE_IDLE_POLL: Duration = Duration::from_secs(5);

/// A `die` event (with the service's id and the task's labels) for each task
/// of the instance on another node than this engine's that is seen exited:
/// newly, or already exited when first listed after the first listing. Read
/// from the manager's task list; a failed read is retried at the next poll.
fn remote_task_exits(docker: Docker, instance: String) -> BoxStream<'static, Result<EngineEvent>> {
    struct Poll {
        docker: Docker,
        instance: String,
        local: Option<String>,
        /// Task id -> exited, as last listed (None before the first listing).
        seen: Option<HashMap<String, bool>>,
        remote_running: bool,
        pending: std::collections::VecDeque<EngineEvent>,
    }
    let poll = Poll {
        docker,
        instance,
        local: None,
        seen: None,
        remote_running: false,
        pending: Default::default(),
    };
    futures::stream::unfold(poll, |mut p| async move {
        loop {
            if let Some(event) = p.pending.pop_front() {
                return Some((Ok(event), p));
            }
            tokio::time::sleep(if p.remote_running {
                REMOTE_EXIT_POLL
            } else {
                REMOTE_IDLE_POLL
            })
            .await;
            if p.local.is_none() {
                p.local = bounded("reading the engine's info", CALL_TIMEOUT, p.docker.info())
                    .await
                    .ok()
                    .and_then(|i| i.swarm?.node_id);
                if p.local.is_none() {
                    continue;
                }
            }
            let filters = HashMap::from([("label", vec![format!("{LABEL_INSTANCE}={}", p.instance)])]);
            let options = ListTasksOptionsBuilder::new().filters(&filters).build();
            let tasks = match bounded("listing tasks", CALL_TIMEOUT, p.docker.list_tasks(Some(options))).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::debug!(error = %Error::from(e), "listing tasks for exits on other nodes");
                    continue;
                }
            };
            let mut now = HashMap::new();
            p.remote_running = false;
            for t in tasks {
                let (Some(id), Some(service)) = (t.id.clone(), t.service_id.clone()) else {
                    continue;
                };
                if t.node_id.is_none() || t.node_id == p.local {
                    continue;
                }
                let state = task_state(Some(&t)).0;
                p.remote_running |= state != ContainerState::Exited;
                let exited = state == ContainerState::Exited;
                let newly = p.seen.as_ref().is_some_and(|seen| seen.get(&id) != Some(&true));
                if exited && newly {
                    let mut attributes = t
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.labels)
                        .unwrap_or_default();
                    attributes.extend(t.labels.unwrap_or_default());
                    p.pending.push_back(EngineEvent {
                        action: "die".to_string(),
                        id: Some(service),
                        attributes,
                    });
                }
                now.insert(id, exited);
            }
            p.seen = Some(now);
        }
    })
    .boxed()
}

/// How the server reaches tasks on the overlay network, which the host
/// cannot route to: through the probe agent, a SOCKS5 proxy
/// ([`DEFAULT_PROBE_IMAGE`], microsocks) in a small container of ours on the
/// overlay, published on 127.0.0.1 only and guarded by a random password made
/// at each start. Loopback addresses (the ingress's published port) are
/// reached directly. Every connection has the caller's deadline; a proxy
/// that does not answer is recreated (at most every few seconds).
#[derive(Debug)]
pub(crate) struct ProbeNetwork {
    inner: DockerEngine,
    state: Mutex<Option<Probe>>,
    repair: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Probe {
    network: String,
    instance: String,
    addr: SocketAddr,
    user: String,
    password: String,
}

fn probe_name(network: &str) -> String {
    format!("{network}-probe")
}

impl ProbeNetwork {
    fn new(inner: DockerEngine) -> ProbeNetwork {
        ProbeNetwork {
            inner,
            state: Mutex::new(None),
            repair: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Probe> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// (Re)creates the probe agent of `network` with a new password.
    async fn start(&self, network: &str, instance: &str) -> Result<()> {
        let name = probe_name(network);
        self.inner.remove(&name).await?;
        let image = std::env::var("DUBERNETES_PROBE_IMAGE").unwrap_or_else(|_| DEFAULT_PROBE_IMAGE.to_string());
        self.inner
            .ensure_image(&image, &super::Pull::if_missing())
            .await
            .map_err(|e| Error::Docker {
                context: format!("the swarm backend's probe agent image {image}"),
                source: format!("{e} (build it with scripts/build-images.sh, or set DUBERNETES_PROBE_IMAGE)").into(),
            })?;
        let password = crate::ownership::new_store_id();
        let mut limits = ContainerLimits::default();
        limits.log_max_bytes = 1024 * 1024;
        limits.log_max_files = 1;
        let user = "dubernetes".to_string();
        let spec = ContainerSpec {
            name: name.clone(),
            image,
            port: PROBE_PORT,
            args: Some(vec![
                "-i".into(),
                "0.0.0.0".into(),
                "-p".into(),
                PROBE_PORT.to_string(),
                "-u".into(),
                user.clone(),
                "-P".into(),
                password.clone(),
            ]),
            labels: HashMap::from([
                (LABEL_INSTANCE.to_string(), instance.to_string()),
                (LABEL_ROLE.to_string(), ROLE_PROBE.to_string()),
            ]),
            network: network.to_string(),
            limits,
            publish: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        };
        let id = self.inner.create(&spec).await?;
        self.inner.start(&id).await?;
        let port = self
            .inner
            .published_port(&id, PROBE_PORT)
            .await?
            .ok_or_else(|| Error::Docker {
                context: format!("probe agent {name}"),
                source: "the engine published no port".into(),
            })?;
        let probe = Probe {
            network: network.to_string(),
            instance: instance.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            user,
            password,
        };
        // Ready when it proxies a connection to itself.
        let deadline = Instant::now() + PROBE_START;
        loop {
            let own = SocketAddr::from(([127, 0, 0, 1], PROBE_PORT));
            let attempt =
                tokio_socks::tcp::Socks5Stream::connect_with_password(probe.addr, own, &probe.user, &probe.password);
            match tokio::time::timeout(Duration::from_secs(1), attempt).await {
                Ok(Ok(_)) => break,
                _ if Instant::now() >= deadline => {
                    return Err(Error::DockerTimeout(format!("starting the probe agent {name}")));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
        Ok(())
    }

    /// Removes the probe agent of `network`.
    async fn stop(&self, network: &str) -> Result<()> {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.as_ref().is_some_and(|p| p.network == network) {
                *state = None;
            }
        }
        self.inner.remove(&probe_name(network)).await
    }

    /// Recreates the probe agent after it failed to answer, at most every
    /// [`PROBE_REPAIR_EVERY`].
    async fn repair(&self, probe: &Probe) {
        let mut last = self.repair.lock().await;
        if last.is_some_and(|at| at.elapsed() < PROBE_REPAIR_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(network = %probe.network, "the probe agent does not answer; recreating it");
        if let Err(e) = self.start(&probe.network, &probe.instance).await {
            tracing::warn!(error = %e, "recreating the probe agent failed");
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_socks::tcp::Socks5Stream<tokio::net::TcpStream>> {
        let probe = self
            .current()
            .ok_or_else(|| std::io::Error::other("the probe agent is not running yet"))?;
        match tokio_socks::tcp::Socks5Stream::connect_with_password(probe.addr, addr, &probe.user, &probe.password)
            .await
        {
            Ok(s) => Ok(s),
            Err(e) => {
                if matches!(
                    e,
                    tokio_socks::Error::Io(_) | tokio_socks::Error::PasswordAuthFailure(_)
                ) {
                    self.repair(&probe).await;
                }
                Err(std::io::Error::other(format!("through the probe agent: {e}")))
            }
        }
    }
}

#[async_trait]
impl Network for ProbeNetwork {
    async fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
        if addr.ip().is_loopback() {
            return HostNetwork.tcp_connect(addr, timeout).await;
        }
        super::within(timeout, self.connect(addr)).await.map(|_| ())
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        if addr.ip().is_loopback() {
            return HostNetwork.http_get(addr, path, host, timeout).await;
        }
        crate::probe::http_get_via(self.connect(addr), path, host, timeout).await
    }
}

/// How often a start refused with "network not found" on the overlay is retried.
const OVERLAY_RETRIES: u32 = 5;

/// Whether the engine refused a start because the network is (still) unknown on this node.
fn is_network_not_found(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("404") && text.contains("network") && text.contains("not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerStatus, ObjectVersion, TaskStatus};

    #[test]
    fn only_a_missing_network_on_start_is_retried() {
        let refused = |status_code: u16, message: &str| {
            super::super::docker::wrap(
                "starting container",
                bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message: message.to_string(),
                },
            )
        };
        assert!(is_network_not_found(&refused(
            404,
            "network 1ub8ct4kgjd5228bkhk6hvl34 not found"
        )));
        assert!(!is_network_not_found(&refused(404, "No such container: x")));
        assert!(!is_network_not_found(&refused(
            500,
            "driver failed programming external connectivity"
        )));
    }

    fn task(index: u64, state: TaskState, exit: Option<i64>) -> Task {
        Task {
            version: Some(ObjectVersion { index: Some(index) }),
            status: Some(TaskStatus {
                state: Some(state),
                err: Some("task: non-zero exit (3)".into()),
                container_status: Some(ContainerStatus {
                    exit_code: exit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ids_tell_containers_from_services() {
        assert!(is_container_id(&"a1".repeat(32)));
        assert!(!is_container_id("ohdgk170u0x26nbdqt3ij0qan"));
        assert!(!is_container_id("dub-x-ingress"));
    }

    #[test]
    fn task_states_map_to_container_states() {
        assert_eq!(task_state(None).0, ContainerState::Created);
        assert_eq!(
            task_state(Some(&task(3, TaskState::PREPARING, None))).0,
            ContainerState::Created
        );
        assert_eq!(
            task_state(Some(&task(3, TaskState::RUNNING, None))).0,
            ContainerState::Running
        );
        let (state, status) = task_state(Some(&task(9, TaskState::FAILED, Some(3))));
        assert_eq!(state, ContainerState::Exited);
        let observed = Observed {
            id: String::new(),
            name: String::new(),
            role: String::new(),
            pod: None,
            revision: None,
            state,
            status,
            ip: None,
            created: 0,
            labels: HashMap::new(),
            ready: false,
        };
        assert_eq!(observed.exit_code(), Some(3), "{}", observed.status);
        assert!(task_order(&task(9, TaskState::FAILED, None)) > task_order(&task(3, TaskState::RUNNING, None)));
    }

    #[test]
    fn grace_periods_are_nanoseconds() {
        assert_eq!(nanos(Duration::from_secs(2)), 2_000_000_000);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
    }
}
