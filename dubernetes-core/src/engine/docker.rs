//! [`Engine`] for the Docker engine, through bollard: with `swarm.rs`, the
//! only file that names a bollard type. Every call has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, Mount as EngineMount, MountTmpfsOptions, MountType, MountVolumeOptions,
    NetworkCreateRequest, NetworkInspect, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{
    ContainerLimits, ContainerSpec, ContainerState, Engine, EngineEvent, HostNetwork, LogChunk, LogRequest, LogSource,
    Mount, Network, Observed, VolumeInfo,
};
use crate::error::{Error, PullFailure, Result};
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};
use crate::spec::PullPolicy;

pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Label Docker puts on a Swarm task's container: its service's id.
pub(super) const LABEL_SWARM_SERVICE: &str = "com.docker.swarm.service.id";
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Most bytes of a crashed replica's last log lines kept for its status and event.
const LOG_TAIL_MAX_BYTES: usize = crate::engine::LOG_TAIL_BYTES;

/// The Docker engine.
#[derive(Debug, Clone)]
pub(crate) struct DockerEngine {
    docker: Docker,
    /// Reached through a local socket (see [`Engine::is_local`]).
    local: bool,
}

pub(super) fn wrap(context: &str, source: DockerError) -> Error {
    Error::Docker {
        context: context.to_string(),
        source: Box::new(source),
    }
}

/// Runs one call with a deadline; the status code of a refusal, if any, stays readable.
pub(super) async fn bounded<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, Refused> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(DockerError::DockerResponseServerError { status_code, message })) => Err(Refused::Status(
            status_code,
            wrap(what, DockerError::DockerResponseServerError { status_code, message }),
        )),
        Ok(Err(source)) => Err(Refused::Other(wrap(what, source))),
        Err(_) => Err(Refused::Other(Error::DockerTimeout(what.to_string()))),
    }
}

/// A failed call: refused with an HTTP status, or anything else.
pub(super) enum Refused {
    Status(u16, Error),
    Other(Error),
}

impl Refused {
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            Refused::Status(code, _) => Some(*code),
            Refused::Other(_) => None,
        }
    }
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Error {
        match r {
            Refused::Status(_, e) | Refused::Other(e) => e,
        }
    }
}

/// Succeeds when the call did, or was refused with one of `fine`.
pub(super) fn ok_unless<T: Default>(result: Result<T, Refused>, fine: &[u16]) -> Result<T> {
    match result {
        Ok(v) => Ok(v),
        Err(r) if r.status().is_some_and(|s| fine.contains(&s)) => Ok(T::default()),
        Err(r) => Err(r.into()),
    }
}

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

/// A replica's mounts, as the engine takes them (a container's `HostConfig.Mounts`
/// and a Swarm task's `ContainerSpec.Mounts` are the same type).
pub(super) fn mounts_of(spec: &ContainerSpec) -> Option<Vec<EngineMount>> {
    (!spec.mounts.is_empty()).then(|| {
        spec.mounts
            .iter()
            .map(|m| match m {
                Mount::Volume { source, target, labels } => EngineMount {
                    typ: Some(MountType::VOLUME),
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    volume_options: Some(MountVolumeOptions {
                        labels: Some(labels.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Mount::Tmpfs { target, bytes } => EngineMount {
                    typ: Some(MountType::TMPFS),
                    target: Some(target.clone()),
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: i64::try_from(*bytes).ok(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            })
            .collect()
    })
}

fn volume_info(v: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name,
        labels: v.labels,
        created_at: v.created_at.map(|t| t.to_string()),
        size: v.usage_data.and_then(|u| u64::try_from(u.size).ok()),
    }
}

/// The sizes of volumes from the engine's disk-usage data (`GET /system/df`),
/// by name. bollard models that answer as API 1.52 has it (`VolumeUsage`);
/// Docker 20.10 (API 1.41) answers with a `Volumes` array it does not read,
/// so this one GET is made by hand, over the local socket only. Empty when
/// the engine is not local or does not answer in time: sizes are a courtesy.
async fn volume_sizes(version: &str) -> HashMap<String, u64> {
    #[derive(serde::Deserialize)]
    struct DiskUsage {
        #[serde(rename = "Volumes", default)]
        volumes: Option<Vec<bollard::models::Volume>>,
    }
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => path.to_string(),
            None => return HashMap::new(),
        },
        _ => "/var/run/docker.sock".to_string(),
    };
    let get = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(&socket).await?;
        let request = format!("GET /v{version}/system/df HTTP/1.0\r\nHost: docker\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // Bounded: a few hundred bytes per image, container and volume.
        stream.take(64 * 1024 * 1024).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let Ok(Ok(answer)) = tokio::time::timeout(CALL_TIMEOUT, get).await else {
        return HashMap::new();
    };
    let Some(body_at) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return HashMap::new();
    };
    let Ok(usage) = serde_json::from_slice::<DiskUsage>(&answer[body_at + 4..]) else {
        return HashMap::new();
    };
    usage
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, u64::try_from(v.usage_data?.size).ok()?)))
        .collect()
}

/// Writes container limits into a host config.
fn apply_limits(limits: &ContainerLimits, host: &mut HostConfig) {
    host.log_config = Some(HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), limits.log_max_bytes.to_string()),
            ("max-file".to_string(), limits.log_max_files.to_string()),
        ])),
    });
    // The engine reads 0 or -1 as "no limit".
    host.pids_limit = Some(limits.pids.map_or(-1, i64::from));
    if limits.no_new_privileges {
        host.security_opt
            .get_or_insert_with(Vec::new)
            .push("no-new-privileges:true".into());
    }
}

fn body_of(spec: &ContainerSpec) -> ContainerCreateBody {
    let port = format!("{}/tcp", spec.port);
    let mut host_config = HostConfig {
        network_mode: Some(spec.network.clone()),
        memory: spec.memory.and_then(|m| i64::try_from(m).ok()),
        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
        port_bindings: spec.publish.map(|at| {
            let binding = |at: std::net::SocketAddr| {
                Some(vec![PortBinding {
                    host_ip: Some(at.ip().to_string()),
                    host_port: Some(if at.port() == 0 {
                        String::new()
                    } else {
                        at.port().to_string()
                    }),
                }])
            };
            let mut bindings = HashMap::from([(port.clone(), binding(at))]);
            if let Some(tls) = spec.publish_tls {
                bindings.insert("443/tcp".to_string(), binding(tls));
            }
            bindings
        }),
        // `Binds`, not `Mounts`: the engine makes a missing host directory
        // (this process may see another filesystem than the engine's host).
        binds: (!spec.binds.is_empty() || !spec.secrets.files.is_empty()).then(|| {
            spec.binds
                .iter()
                .map(|b| format!("{}:{}:rw", b.host.display(), b.container))
                .chain(
                    spec.secrets
                        .files
                        .iter()
                        .map(|b| format!("{}:{}:ro", b.host.display(), b.container)),
                )
                .collect()
        }),
        mounts: mounts_of(spec),
        dns: (!spec.dns.is_empty()).then(|| spec.dns.iter().map(ToString::to_string).collect()),
        restart_policy: spec.restart.then_some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    apply_limits(&spec.limits, &mut host_config);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: super::env_of(spec),
        labels: Some(spec.labels.clone()),
        exposed_ports: Some({
            if spec.publish_tls.is_some() {
                vec![port, "443/tcp".to_string()]
            } else {
                vec![port]
            }
        }),
        entrypoint: spec.command.clone(),
        cmd: spec.args.clone(),
        host_config: Some(host_config),
        // Only replicas name their endpoint (the ingress joins through network_mode).
        networking_config: spec.publish.is_none().then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    ipam_config: spec.ip.map(|ip| EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// An IPv4 subnet in CIDR form: its first address and prefix length.
fn v4_subnet(cidr: &str) -> Option<(u32, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    // Room for a gateway, replicas and the responder in each half.
    if !(8..=28).contains(&len) {
        return None;
    }
    let mask = u32::MAX << (32 - len);
    Some((u32::from(addr) & mask, len))
}

/// For a subnet the engine chose: the range it may hand out (the lower
/// half) and the name responder's fixed address (the last usable one, in
/// the upper half, so no other container ever gets it).
pub(super) fn names_layout(subnet: &str) -> Option<(String, std::net::Ipv4Addr)> {
    let (base, len) = v4_subnet(subnet)?;
    let size = 1u32 << (32 - len);
    let range = format!("{}/{}", std::net::Ipv4Addr::from(base), len + 1);
    Some((range, std::net::Ipv4Addr::from(base + size - 2)))
}

/// The name responder's address on an inspected network: set only when its
/// IPv4 config has the subnet and range [`names_layout`] makes.
pub(super) fn names_address_of(network: &NetworkInspect) -> Option<std::net::IpAddr> {
    network.ipam.as_ref()?.config.as_ref()?.iter().find_map(|c| {
        let subnet = c.subnet.as_deref()?;
        let (range, addr) = names_layout(subnet)?;
        (c.ip_range.as_deref() == Some(range.as_str())).then_some(std::net::IpAddr::V4(addr))
    })
}

/// Creates a network whose subnet reserves the name responder's address
/// (see [`names_layout`]). The engine has no call to pick a subnet and
/// reserve an address in it, so: a throwaway network of the same driver
/// shows which free subnet the engine picks (it avoids other networks and,
/// for bridges, the host's routes), is removed, and the real network is made
/// with that subnet and its lower half as the range handed out. A parallel
/// creation may take the subnet in between: the engine refuses the overlap
/// and this tries again. 409 (the name is taken: another server of the
/// instance won) is success.
pub(super) async fn create_network_with_names(docker: &Docker, request: NetworkCreateRequest) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        // Short (Swarm refuses names over 63 characters) and unique.
        let random = crate::ids::new_id();
        let probe_name = format!("dub-subnet-{}", random.get(..16).unwrap_or(&random));
        let probe = NetworkCreateRequest {
            name: probe_name.clone(),
            ..request.clone()
        };
        let created = bounded("creating network", CALL_TIMEOUT, docker.create_network(probe)).await?;
        let probe_id = if created.id.is_empty() { probe_name } else { created.id };
        let inspect = bounded(
            "inspecting network",
            CALL_TIMEOUT,
            docker.inspect_network(&probe_id, None::<bollard::query_parameters::InspectNetworkOptions>),
        )
        .await;
        ok_unless(
            bounded("removing network", CALL_TIMEOUT, docker.remove_network(&probe_id)).await,
            &[404],
        )?;
        let subnet = inspect?
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| c.subnet.filter(|s| names_layout(s).is_some()));
        let mut real = request.clone();
        if let Some(subnet) = subnet.as_deref()
            && let Some((range, _)) = names_layout(subnet)
        {
            real.ipam = Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ip_range: Some(range),
                    ..Default::default()
                }]),
                options: None,
            });
        } else {
            tracing::warn!(network = %request.name, "the engine picked no IPv4 subnet with room for the name responder; pods get no names");
        }
        match bounded("creating network", CALL_TIMEOUT, docker.create_network(real)).await {
            // Swarm accepts an overlay whose subnet another network has
            // (then a fixed address cannot be attached on both): one made
            // in between, or left behind, is a reason to try another.
            Ok(created) if subnet.is_some() && !created.id.is_empty() => {
                let Some(other) = overlapping_network(docker, &created.id, subnet.as_deref().unwrap_or("")).await?
                else {
                    return Ok(());
                };
                tracing::debug!(network = %request.name, other, "the subnet is another network's; trying again");
                ok_unless(
                    bounded("removing network", CALL_TIMEOUT, docker.remove_network(&created.id)).await,
                    &[404],
                )?;
                last = Some(Error::Docker {
                    context: format!("creating network {}", request.name),
                    source: format!("its subnet is network {other}'s too").into(),
                });
            }
            Ok(_) => return Ok(()),
            Err(r) if r.status() == Some(409) => return Ok(()),
            // "Pool overlaps with other one on this address space": taken meanwhile.
            Err(r) if attempt + 1 < ATTEMPTS && r.status() == Some(403) => {
                tracing::debug!(network = %request.name, attempt, "the subnet was taken meanwhile; trying again");
                last = Some(Error::from(r));
            }
            Err(r) => return Err(r.into()),
        }
    }
    Err(last.unwrap_or_else(|| Error::DockerTimeout("creating network".into())))
}

/// Repairs a duplicate of the instance's network `name`. Docker 20.10 lets
/// two networks share a name (servers of one store starting at once made
/// two; an older version could too), and every container start then fails
/// with "network ... is ambiguous". The earliest made (then the lowest id)
/// is kept, as every server judges alike, and the later ones carrying this
/// instance's label are removed; a network of the name that is not the
/// instance's is never touched. One that cannot be removed (a container
/// still uses it) is an error naming it and the fix.
pub(super) async fn settle_duplicates(docker: &Docker, name: &str, instance: &str) -> Result<()> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let options = bollard::query_parameters::ListNetworksOptionsBuilder::new()
        .filters(&filters)
        .build();
    let listed = bounded("listing networks", CALL_TIMEOUT, docker.list_networks(Some(options))).await?;
    // The engine's name filter matches substrings.
    let mut same: Vec<_> = listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| {
            let ours = n
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .map(String::as_str)
                == Some(instance);
            Some((n.created, n.id?, ours))
        })
        .collect();
    if same.len() < 2 {
        return Ok(());
    }
    // The date is a string or a time, by bollard's features: either orders.
    same.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let kept = same[0].1.clone();
    for (_, id, ours) in same.into_iter().skip(1) {
        if !ours {
            tracing::warn!(
                network = name,
                id,
                kept,
                "another network has the instance network's name and is not this instance's: left alone"
            );
            continue;
        }
        tracing::warn!(
            network = name,
            id,
            kept,
            "removing a duplicate of the instance network (two networks of one name make every start fail)"
        );
        if let Err(e) = ok_unless(
            bounded("removing network", CALL_TIMEOUT, docker.remove_network(&id)).await,
            &[404],
        ) {
            return Err(Error::Docker {
                context: format!("network {name}"),
                source: format!(
                    "two networks have this name (kept {kept}); the duplicate {id} could not be removed ({e}): \
                     disconnect its containers and run `docker network rm {id}`"
                )
                .into(),
            });
        }
    }
    Ok(())
}

/// The name of a network other than `ours` whose IPv4 subnet overlaps `subnet`.
async fn overlapping_network(docker: &Docker, ours: &str, subnet: &str) -> Result<Option<String>> {
    let Some((base, len)) = v4_subnet(subnet) else {
        return Ok(None);
    };
    let networks = bounded(
        "listing networks",
        CALL_TIMEOUT,
        docker.list_networks(None::<bollard::query_parameters::ListNetworksOptions>),
    )
    .await?;
    let overlaps = |cidr: &str| {
        let Some((addr, other_len)) = cidr
            .split_once('/')
            .and_then(|(a, l)| Some((a.parse::<std::net::Ipv4Addr>().ok()?, l.parse::<u8>().ok()?)))
        else {
            return false;
        };
        // Two CIDR blocks overlap when the shorter prefix contains the other's base.
        let shorter = len.min(other_len).min(32);
        let mask = if shorter == 0 { 0 } else { u32::MAX << (32 - shorter) };
        (u32::from(addr) & mask) == (base & mask)
    };
    Ok(networks.into_iter().find_map(|n| {
        if n.id.as_deref() == Some(ours) {
            return None;
        }
        let hit = n
            .ipam
            .as_ref()?
            .config
            .as_ref()?
            .iter()
            .any(|c| c.subnet.as_deref().is_some_and(overlaps));
        hit.then(|| n.name.unwrap_or_default())
    }))
}

impl DockerEngine {
    /// Uploads one file (a one-entry tar; missing parent directories are created by the engine).
    async fn upload(&self, id: &str, dir: &str, file: &str, content: &[u8], mode: u32) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(crate::clock::now_ms() as u64 / 1000);
        let mut builder = tar::Builder::new(Vec::new());
        let tar = builder
            .append_data(&mut header, file, content)
            .and_then(|_| builder.into_inner())
            .map_err(|e| Error::Ingress(format!("building archive: {e}")))?;
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        let upload = self
            .docker
            .upload_to_container(id, Some(options), bollard::body_full(bytes::Bytes::from(tar)));
        Ok(bounded(&format!("writing {dir}/{file}"), CALL_TIMEOUT, upload).await?)
    }

    /// Connects as the docker CLI would (`DOCKER_HOST` or the local socket) and
    /// negotiates the API version with the engine.
    pub(crate) async fn connect() -> Result<DockerEngine> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| wrap("connecting to the Docker engine (is DOCKER_HOST right?)", e))?;
        let docker = bounded("negotiating the API version", CALL_TIMEOUT, docker.negotiate_version()).await?;
        bounded("pinging the engine", CALL_TIMEOUT, docker.ping()).await?;
        // Where bollard connects (`connect_with_defaults`): the local socket
        // unless DOCKER_HOST names another.
        let local = std::env::var("DOCKER_HOST")
            .map(|h| h.is_empty() || h.starts_with("unix://") || h.starts_with("npipe://"))
            .unwrap_or(true);
        Ok(DockerEngine { docker, local })
    }

    /// The bollard client, for the Swarm engine built on this one.
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    async fn inspect(&self, id: &str) -> Result<bollard::models::ContainerInspectResponse> {
        Ok(bounded(
            "inspecting container",
            CALL_TIMEOUT,
            self.docker
                .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>),
        )
        .await?)
    }
}

#[async_trait]
impl Engine for DockerEngine {
    fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    async fn reconnect(&self) -> Result<Arc<dyn Engine>> {
        Ok(Arc::new(DockerEngine::connect().await?))
    }

    fn network(&self) -> Arc<dyn Network> {
        Arc::new(HostNetwork)
    }

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
            Ok(_) => return Ok(()),
            Err(r) if r.status() == Some(404) => {}
            Err(r) => return Err(r.into()),
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(LABEL_INSTANCE.to_string(), instance.to_string())])),
            ..Default::default()
        };
        create_network_with_names(&self.docker, request).await
    }

    async fn names_address(&self, network: &str) -> Result<Option<std::net::IpAddr>> {
        let inspect = bounded(
            "inspecting network",
            CALL_TIMEOUT,
            self.docker
                .inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>),
        )
        .await?;
        Ok(names_address_of(&inspect))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        ok_unless(
            bounded("removing network", CALL_TIMEOUT, self.docker.remove_network(name)).await,
            &[404],
        )
    }

    async fn list(&self, instance: &str, network: &str, pod: Option<&str>) -> Result<Vec<Observed>> {
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
                // A task container of the swarm backend is Swarm's to manage.
                if labels.contains_key(LABEL_SWARM_SERVICE) {
                    return None;
                }
                let id = s.id?;
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

    async fn ensure_image(&self, image: &str, pull: &super::Pull) -> Result<()> {
        let present = match bounded("inspecting image", CALL_TIMEOUT, self.docker.inspect_image(image)).await {
            Ok(_) => true,
            Err(r) if r.status() == Some(404) => false,
            Err(r) => return Err(r.into()),
        };
        match pull.policy {
            PullPolicy::Never if present => return Ok(()),
            PullPolicy::Never => {
                return Err(Error::ImagePull {
                    image: image.to_string(),
                    reason: PullFailure::NotPresent,
                    message: "the engine does not have it and `pull` is `never`: build or load it there, or set `pull: if-not-present`".into(),
                });
            }
            PullPolicy::IfNotPresent if present => return Ok(()),
            PullPolicy::IfNotPresent | PullPolicy::Always => {}
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let credentials = pull.auth.as_ref().map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let stream = self
            .docker
            .create_image(Some(options), None, credentials)
            .try_collect::<Vec<_>>();
        match tokio::time::timeout(PULL_TIMEOUT, stream).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(pull_error(image, &e)),
            Err(_) => Err(Error::ImagePull {
                image: image.to_string(),
                reason: PullFailure::Unreachable,
                message: format!("the pull took longer than {}s", PULL_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn ensure_volume(&self, name: &str, labels: &HashMap<String, String>) -> Result<VolumeInfo> {
        // The engine answers a create of an existing volume with that volume
        // as it is (its labels untouched): one call, no race between check and create.
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        let volume = bounded("creating volume", CALL_TIMEOUT, self.docker.create_volume(request)).await?;
        Ok(volume_info(volume))
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>> {
        match bounded("inspecting volume", CALL_TIMEOUT, self.docker.inspect_volume(name)).await {
            Ok(v) => Ok(Some(volume_info(v))),
            Err(r) if r.status() == Some(404) => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    async fn list_volumes(&self, instance: &str, sizes: bool) -> Result<Vec<VolumeInfo>> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_INSTANCE}={instance}")])]);
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let listed = bounded("listing volumes", CALL_TIMEOUT, self.docker.list_volumes(Some(options))).await?;
        let mut volumes: Vec<VolumeInfo> = listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_info)
            .collect();
        if sizes && self.local && !volumes.is_empty() {
            let known = volume_sizes(&self.api_version()).await;
            for v in &mut volumes {
                v.size = v.size.or_else(|| known.get(&v.name).copied());
            }
        }
        Ok(volumes)
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match bounded(
            "removing volume",
            CALL_TIMEOUT,
            self.docker.remove_volume(name, Some(options)),
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(r) if r.status() == Some(404) => Ok(()),
            Err(r) if r.status() == Some(409) => Err(Error::VolumeInUse {
                name: name.to_string(),
                pods: Vec::new(),
            }),
            Err(r) => Err(r.into()),
        }
    }

    async fn place(&self, spec: &ContainerSpec, count: usize) -> Result<Vec<Vec<dubernetes_api::Constraint>>> {
        super::nodes::docker_place(&self.docker, spec, count).await
    }

    async fn nodes(&self, instance: &str) -> Result<Vec<dubernetes_api::Node>> {
        super::nodes::docker_nodes(&self.docker, instance).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        let created = bounded(
            "creating container",
            CALL_TIMEOUT,
            self.docker.create_container(Some(options), body_of(spec)),
        )
        .await?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        ok_unless(
            bounded(
                "starting container",
                CALL_TIMEOUT,
                self.docker
                    .start_container(id, None::<bollard::query_parameters::StartContainerOptions>),
            )
            .await,
            &[304],
        )
    }

    /// The engine waits the grace period itself while this request is open.
    /// bollard's client timeout (120 s) would cut a longer wait short, so this
    /// one call gets its own, the grace period plus [`CALL_TIMEOUT`].
    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let limit = grace + CALL_TIMEOUT;
        let docker = self.docker.clone().with_timeout(limit);
        let stop = docker.stop_container(id, Some(StopContainerOptionsBuilder::new().t(secs).build()));
        ok_unless(bounded("stopping container", limit, stop).await, &[304, 404])
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        // 409: a removal is already in progress.
        ok_unless(
            bounded(
                "removing container",
                CALL_TIMEOUT,
                self.docker.remove_container(id, Some(options)),
            )
            .await,
            &[404, 409],
        )
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        Ok(bounded(
            "signalling container",
            CALL_TIMEOUT,
            self.docker.kill_container(id, Some(options)),
        )
        .await?)
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, String)> {
        let config = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = bounded("creating exec", CALL_TIMEOUT, self.docker.create_exec(id, config)).await?;
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

    async fn write_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        self.upload(id, dir, file, content, 0o644).await
    }

    async fn write_private_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        self.upload(id, dir, file, content, 0o600).await
    }

    async fn write_files(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let mtime = crate::clock::now_ms() as u64 / 1000;
        let mut builder = tar::Builder::new(Vec::new());
        let mut dirs: Vec<&str> = Vec::new();
        for (path, content) in files {
            // The directories first (the engine would make them too, but root-owned 0755 on purpose).
            let mut at = 0;
            while let Some(slash) = path[at..].find('/') {
                let sub = &path[..at + slash];
                if !dirs.contains(&sub) {
                    dirs.push(sub);
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_mtime(mtime);
                    builder
                        .append_data(&mut header, format!("{sub}/"), std::io::empty())
                        .map_err(|e| Error::Ingress(format!("building archive: {e}")))?;
                }
                at += slash + 1;
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            builder
                .append_data(&mut header, path, content.as_slice())
                .map_err(|e| Error::Ingress(format!("building archive: {e}")))?;
        }
        let tar = builder
            .into_inner()
            .map_err(|e| Error::Ingress(format!("building archive: {e}")))?;
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        let upload = self
            .docker
            .upload_to_container(id, Some(options), bollard::body_full(bytes::Bytes::from(tar)));
        Ok(bounded(
            &format!("writing {} files under {dir}", files.len()),
            CALL_TIMEOUT,
            upload,
        )
        .await?)
    }

    fn is_local(&self) -> bool {
        self.local
    }

    async fn read_files(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let what = format!("reading {path}");
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        // The archive's headers count too (512 bytes a file, padding): allow some room.
        let limit = max_bytes.saturating_mul(2).saturating_add(64 * 1024);
        let download = async {
            let mut stream = self.docker.download_from_container(id, Some(options));
            let mut tar = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if tar.len() + chunk.len() > limit {
                    return Ok(None);
                }
                tar.extend_from_slice(&chunk);
            }
            Ok(Some(tar))
        };
        let too_big = || Error::Ingress(format!("{path} in container {id} holds more than {max_bytes} bytes"));
        let tar = bounded(&what, CALL_TIMEOUT, download).await?.ok_or_else(too_big)?;
        let bad = |e: std::io::Error| Error::Ingress(format!("{what}: the engine sent an unreadable archive: {e}"));
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut files = Vec::new();
        let mut total = 0usize;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).map_err(bad)?;
            total += content.len();
            if total > max_bytes {
                return Err(too_big());
            }
            files.push((name, content));
        }
        Ok(files)
    }

    async fn is_running(&self, id: &str) -> Result<bool> {
        Ok(self.inspect(id).await?.state.and_then(|s| s.running).unwrap_or(false))
    }

    async fn published_port(&self, id: &str, container_port: u16) -> Result<Option<u16>> {
        Ok(self
            .inspect(id)
            .await?
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(&format!("{container_port}/tcp")))
            .flatten()
            .and_then(|b| b.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok()))))
    }

    fn events(&self, instance: &str) -> BoxStream<'static, Result<EngineEvent>> {
        let filters = HashMap::from([
            ("type", vec!["container".to_string()]),
            ("label", vec![format!("{LABEL_INSTANCE}={instance}")]),
        ]);
        self.docker
            .events(Some(EventsOptionsBuilder::new().filters(&filters).build()))
            .map(|event| {
                let event = event.map_err(|e| wrap("reading the event stream", e))?;
                let actor = event.actor.unwrap_or_default();
                Ok(EngineEvent {
                    action: event.action.unwrap_or_default(),
                    id: actor.id,
                    attributes: actor.attributes.unwrap_or_default(),
                })
            })
            .boxed()
    }

    async fn log_tail(&self, id: &str, tail: usize) -> Result<String> {
        read_tail(self.docker.logs(id, Some(tail_options(tail)))).await
    }

    fn logs(&self, id: &str, request: LogRequest) -> BoxStream<'static, Result<LogChunk>> {
        log_chunks(
            self.docker.logs(id, Some(log_options(request))),
            format!("reading the log of {id}"),
        )
    }

    async fn exec_attach(&self, id: &str, request: &super::ExecRequest) -> Result<super::ExecSession> {
        let config = CreateExecOptions {
            cmd: Some(request.cmd.clone()),
            env: Some(request.env.clone()),
            attach_stdin: Some(request.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(request.tty),
            ..Default::default()
        };
        let exec = bounded("creating exec", CALL_TIMEOUT, self.docker.create_exec(id, config)).await?;
        let options = bollard::exec::StartExecOptions {
            detach: false,
            tty: request.tty,
            output_capacity: None,
        };
        match bounded(
            "starting exec",
            CALL_TIMEOUT,
            self.docker.start_exec(&exec.id, Some(options)),
        )
        .await?
        {
            StartExecResults::Attached { output, input } => Ok(super::ExecSession {
                id: exec.id,
                output: log_chunks(output, "reading the exec's output".to_string()),
                input,
            }),
            StartExecResults::Detached => Err(Error::Internal("the engine started the exec detached".into())),
        }
    }

    async fn exec_resize(&self, exec: &str, width: u16, height: u16) -> Result<()> {
        let options = bollard::exec::ResizeExecOptions { height, width };
        Ok(bounded("resizing exec", CALL_TIMEOUT, self.docker.resize_exec(exec, options)).await?)
    }

    async fn exec_status(&self, exec: &str) -> Result<super::ExecStatus> {
        let inspect = bounded("inspecting exec", CALL_TIMEOUT, self.docker.inspect_exec(exec)).await?;
        Ok(super::ExecStatus {
            running: inspect.running.unwrap_or(false),
            exit_code: inspect.exit_code,
        })
    }

    async fn exit_code(&self, id: &str) -> Result<Option<i64>> {
        let inspect = bounded(
            "inspecting container",
            CALL_TIMEOUT,
            self.docker
                .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>),
        )
        .await?;
        let state = inspect.state.unwrap_or_default();
        if state.running.unwrap_or(false) || state.restarting.unwrap_or(false) {
            return Ok(None);
        }
        Ok(state.exit_code)
    }

    async fn exit_info(&self, id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let inspect = bounded(
            "inspecting container",
            CALL_TIMEOUT,
            self.docker
                .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>),
        )
        .await?;
        let state = inspect.state.unwrap_or_default();
        if state.running.unwrap_or(false) || state.restarting.unwrap_or(false) {
            return Ok(None);
        }
        let finished = state
            .finished_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        Ok(state.exit_code.map(|code| (code, finished)))
    }
}

/// Query of the last `tail` lines, stdout and stderr.
pub(super) fn tail_options(tail: usize) -> LogsOptions {
    LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&tail.to_string())
        .build()
}

/// Query of a log read.
pub(super) fn log_options(request: LogRequest) -> LogsOptions {
    let tail = request.tail.map_or_else(|| "all".to_string(), |n| n.to_string());
    let mut options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(request.follow)
        .tail(&tail);
    if let Some(since) = request.since {
        options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
    }
    options.build()
}

/// The last [`LOG_TAIL_MAX_BYTES`] of a finite log stream, as text.
pub(super) async fn read_tail(logs: impl futures::Stream<Item = Result<LogOutput, DockerError>>) -> Result<String> {
    // A line without a newline can be any length: read at most
    // LOG_TAIL_MAX_BYTES, keeping the end (the last lines are the point).
    let read = async {
        let mut logs = std::pin::pin!(logs);
        let mut tail: Vec<u8> = Vec::new();
        while let Some(chunk) = logs.next().await {
            tail.extend_from_slice(&chunk?.into_bytes());
            if tail.len() > 2 * LOG_TAIL_MAX_BYTES {
                tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
            }
        }
        if tail.len() > LOG_TAIL_MAX_BYTES {
            tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
        }
        Ok(tail)
    };
    let tail = bounded("reading logs", CALL_TIMEOUT, read).await?;
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// A bollard log stream in our words; a container (or service) removed while
/// it is read simply ends its log.
pub(super) fn log_chunks(
    logs: impl futures::Stream<Item = Result<LogOutput, DockerError>> + Send + 'static,
    what: String,
) -> BoxStream<'static, Result<LogChunk>> {
    logs.take_while(|chunk| {
        let gone = matches!(
            chunk,
            Err(DockerError::DockerResponseServerError { status_code: 404, .. })
        );
        futures::future::ready(!gone)
    })
    .map(move |chunk| match chunk {
        Ok(LogOutput::StdErr { message }) => Ok(LogChunk {
            source: LogSource::Stderr,
            bytes: message,
        }),
        Ok(other) => Ok(LogChunk {
            source: LogSource::Stdout,
            bytes: other.into_bytes(),
        }),
        Err(e) => Err(wrap(&what, e)),
    })
    .boxed()
}

/// A failed pull as the pod's status and event say it: why (from the
/// registry's or the engine's words), the engine's message escaped and cut.
fn pull_error(image: &str, e: &DockerError) -> Error {
    let text = match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    let lower = text.to_ascii_lowercase();
    let reason = if [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        PullFailure::Unauthorized
    } else if ["manifest unknown", "not found", "does not exist", "name unknown"]
        .iter()
        .any(|w| lower.contains(w))
    {
        PullFailure::NotFound
    } else if [
        "connection refused",
        "no such host",
        "timeout",
        "i/o timeout",
        "dial tcp",
        "network is unreachable",
        "http response to https",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        PullFailure::Unreachable
    } else {
        PullFailure::Other
    };
    let message: String = text.escape_debug().take(512).collect();
    Error::ImagePull {
        image: image.to_string(),
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_responder_takes_the_last_address_outside_the_range_handed_out() {
        assert_eq!(
            names_layout("172.20.0.0/16"),
            Some(("172.20.0.0/17".to_string(), "172.20.255.254".parse().expect("ip")))
        );
        assert_eq!(
            names_layout("10.0.5.0/24"),
            Some(("10.0.5.0/25".to_string(), "10.0.5.254".parse().expect("ip")))
        );
        // Too small for a gateway, replicas and the responder; not IPv4.
        assert_eq!(names_layout("10.0.5.0/30"), None);
        assert_eq!(names_layout("fd00::/64"), None);
    }

    #[test]
    fn only_a_network_made_with_that_range_has_a_responder_address() {
        let network = |subnet: &str, range: Option<&str>| NetworkInspect {
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ip_range: range.map(str::to_string),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            names_address_of(&network("10.0.5.0/24", Some("10.0.5.0/25"))),
            Some("10.0.5.254".parse().expect("ip"))
        );
        // Made by an older version (no range), or with another range.
        assert_eq!(names_address_of(&network("10.0.5.0/24", None)), None);
        assert_eq!(names_address_of(&network("10.0.5.0/24", Some("10.0.5.128/25"))), None);
    }
}
