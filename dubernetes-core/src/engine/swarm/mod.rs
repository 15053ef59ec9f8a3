//! [`Engine`] for Docker Swarm mode, through bollard (with `docker.rs` and
//! `nodes.rs`, the only files that name a bollard type).
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
    TaskSpecContainerSpec, TaskSpecContainerSpecDnsConfig, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
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
pub(crate) use crate::labels::LABEL_IMAGE;
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};

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

mod exits;
mod probe;
mod service;

use exits::remote_task_exits;
pub(crate) use probe::ProbeNetwork;
use service::{task_order, task_state};

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
        self.inner.remove_volume(name).await?;
        // The volume's pin goes with it: its next pod is placed afresh.
        super::nodes::swarm_unpin(&self.docker, name).await
    }

    async fn place(&self, spec: &ContainerSpec, count: usize) -> Result<Vec<Vec<dubernetes_api::Constraint>>> {
        super::nodes::swarm_place(&self.docker, spec, count).await
    }

    async fn nodes(&self, instance: &str) -> Result<Vec<dubernetes_api::Node>> {
        super::nodes::swarm_node_list(&self.docker, instance).await
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
