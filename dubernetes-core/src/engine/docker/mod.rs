//! [`Engine`] for the Docker engine, through bollard: with `swarm.rs`, the
//! only file that names a bollard type. Every call has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerSummaryStateEnum, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{
    ContainerSpec, ContainerState, Engine, EngineEvent, HostNetwork, LogChunk, LogRequest, Network, Observed,
    VolumeInfo,
};
use crate::error::{Error, PullFailure, Result};
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};
use crate::spec::PullPolicy;

mod create;
mod logs;
mod network;
mod pull;
mod volumes;

use self::create::body_of;
pub(super) use self::create::mounts_of;
pub(super) use self::logs::{log_chunks, log_options, read_tail, tail_options};
pub(super) use self::network::{create_network_with_names, names_address_of, settle_duplicates};
use self::pull::pull_error;
use self::volumes::{volume_info, volume_sizes};

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
        Ok(self.exit_info(id).await?.map(|(code, _)| code))
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
