//! The engine as this store may use it: an [`Engine`] wrapped in the store's
//! ownership. Every container made through a [`Runtime`] carries the store's
//! labels, and [`list`](Runtime::list) shows only the containers the store
//! manages, whatever the engine behind it: a new engine cannot forget either.
//!
//! Every container we create carries labels that make it self-describing
//! (instance, pod, revision), so the controller learns what runs by listing
//! containers, never from rows it wrote earlier.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;

use crate::engine::{Backend, Engine, EngineEvent, Network};
pub use crate::engine::{
    ContainerLimits, ContainerState, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES, DEFAULT_PIDS_LIMIT,
};
pub(crate) use crate::engine::{ContainerSpec, Mount, Observed, VolumeInfo};
use crate::error::{Error, Result};
use crate::labels::{LABEL_DATA_DIR, LABEL_INSTANCE, LABEL_STORE, LABEL_VOLUME};
use crate::metrics::{EngineOp, Metrics};
use crate::ownership::Ownership;

/// An engine call that takes this long is logged as a warning (it is timed
/// into the metrics either way).
const SLOW_ENGINE_CALL: std::time::Duration = std::time::Duration::from_secs(5);

/// The engine's name of the instance's volume `name`: `dub-<instance>_<name>`.
/// Both parts are DNS labels, which have no `_`, so no two (instance, name)
/// pairs share an engine name, and none is a container's or network's name.
pub(crate) fn volume_engine_name(instance: &str, name: &str) -> String {
    format!("dub-{instance}_{name}")
}

/// The engine, seen through this store's ownership.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    engine: Arc<dyn Engine>,
    ownership: Arc<Ownership>,
    /// The leadership term this runtime acts for (see [`Runtime::fenced`]).
    fence: Option<tokio_util::sync::CancellationToken>,
    /// Every engine call below is timed here, by operation.
    metrics: Metrics,
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

impl Runtime {
    /// Connects to the Docker engine (`DOCKER_HOST` or the local socket), as
    /// one engine or as a swarm manager.
    pub(crate) async fn connect(backend: Backend, ownership: Arc<Ownership>, metrics: Metrics) -> Result<Runtime> {
        let engine: Arc<dyn Engine> = match backend {
            Backend::Docker => Arc::new(crate::engine::docker::DockerEngine::connect().await?),
            Backend::Swarm => Arc::new(crate::engine::swarm::SwarmEngine::connect().await?),
        };
        Ok(Runtime::new(engine, ownership, metrics))
    }

    /// Wraps any engine in this store's ownership; its calls are timed into `metrics`.
    pub(crate) fn new(engine: Arc<dyn Engine>, ownership: Arc<Ownership>, metrics: Metrics) -> Runtime {
        Runtime {
            engine,
            ownership,
            fence: None,
            metrics,
        }
    }

    /// The instance's metrics (the controller and the ingress record into them too).
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Runs one engine call, timing it (and counting its failure) by operation.
    async fn timed<T>(&self, op: EngineOp, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = std::time::Instant::now();
        let result = call.await;
        let took = started.elapsed();
        self.metrics.engine_call(op, took, &result);
        // Engine calls take milliseconds; one that takes seconds holds up a
        // reconcile (and a rollout step), and the log should say which.
        // A stop waits out its grace period: not slow.
        if took >= SLOW_ENGINE_CALL && !matches!(op, EngineOp::Stop) {
            tracing::warn!(op = op.as_str(), ?took, ok = result.is_ok(), "slow engine call");
        }
        result
    }

    /// This runtime for one leadership term: once `fence` is cancelled, every
    /// call that changes the engine fails with [`Error::Fenced`] before it is
    /// sent, and one in flight is abandoned (the engine may still finish it;
    /// the next leader sees the result, as it sees everything, by label).
    /// Reads stay allowed. This is what keeps a leader that lost its lock
    /// from acting while another leads.
    pub(crate) fn fenced(&self, fence: tokio_util::sync::CancellationToken) -> Runtime {
        Runtime {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// Runs an engine call that changes something, unless the term is over.
    async fn act<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        match &self.fence {
            None => call.await,
            Some(fence) => {
                if fence.is_cancelled() {
                    return Err(Error::Fenced);
                }
                tokio::select! {
                    biased;
                    _ = fence.cancelled() => Err(Error::Fenced),
                    result = call => result,
                }
            }
        }
    }

    /// A new connection to the same engine, same ownership (see [`Engine::reconnect`]).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) async fn reconnect(&self) -> Result<Runtime> {
        Ok(Runtime {
            engine: self.engine.reconnect().await?,
            ..self.clone()
        })
    }

    /// The engine itself, for calls that ownership does not concern (they
    /// name a container the caller got from a list or a create).
    pub(crate) fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The engine itself, shared (an exec outlives the call that started it).
    pub(crate) fn engine_arc(&self) -> Arc<dyn Engine> {
        Arc::clone(&self.engine)
    }

    /// How the host reaches the engine's networks.
    pub(crate) fn network(&self) -> Arc<dyn Network> {
        self.engine.network()
    }

    /// The ownership rule this runtime applies.
    pub(crate) fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// Which backend the engine is.
    pub(crate) fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// The API version in use after negotiation.
    pub(crate) fn api_version(&self) -> String {
        self.engine.api_version()
    }

    /// Creates the instance's network if it is missing.
    pub(crate) async fn ensure_network(&self, name: &str, instance: &str) -> Result<()> {
        self.timed(
            EngineOp::EnsureNetwork,
            self.act(self.engine.ensure_network(name, instance)),
        )
        .await
    }

    /// The fixed address of the name responder on `network` (see
    /// [`crate::engine::Engine::names_address`]).
    pub(crate) async fn names_address(&self, network: &str) -> Result<Option<std::net::IpAddr>> {
        self.engine.names_address(network).await
    }

    /// Removes a network; a missing one is fine.
    pub(crate) async fn remove_network(&self, name: &str) -> Result<()> {
        self.timed(EngineOp::RemoveNetwork, self.act(self.engine.remove_network(name)))
            .await
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
        let all = self
            .timed(EngineOp::List, self.engine.list(instance, network, pod))
            .await?;
        Ok(all
            .into_iter()
            .filter(|c| {
                let visible = match scope {
                    Scope::All => true,
                    Scope::Owned => self.ownership.owns(&c.id, &c.labels),
                    Scope::Managed => self.ownership.manages(&c.id, &c.labels),
                };
                if !visible && !self.ownership.owns(&c.id, &c.labels) && self.ownership.note_foreign(&c.id) {
                    tracing::warn!(
                        container = %c.id,
                        store = c.labels.get(LABEL_STORE).map_or("(none)", String::as_str),
                        data_dir = c.labels.get(LABEL_DATA_DIR).map_or("(unknown)", String::as_str),
                        "a container of this instance belongs to another store; it is left alone"
                    );
                }
                visible
            })
            .collect())
    }

    /// Makes sure the instance's volume `name` exists and is this store's;
    /// returns its engine name. A missing one is made with the store's
    /// labels; one that exists and carries another store id (or none) is
    /// [`Error::VolumeNotOwned`]: it is never mounted.
    pub(crate) async fn ensure_volume(&self, instance: &str, name: &str) -> Result<String> {
        let engine_name = volume_engine_name(instance, name);
        let labels = self.volume_labels(instance, name);
        let volume = self
            .timed(
                EngineOp::Volume,
                self.act(self.engine.ensure_volume(&engine_name, &labels)),
            )
            .await?;
        self.check_volume_owner(name, &volume)?;
        Ok(engine_name)
    }

    /// The labels of the instance's volume `name`.
    pub(crate) fn volume_labels(&self, instance: &str, name: &str) -> std::collections::HashMap<String, String> {
        let mut labels: std::collections::HashMap<String, String> = self.ownership.labels().into_iter().collect();
        labels.insert(LABEL_INSTANCE.to_string(), instance.to_string());
        labels.insert(LABEL_VOLUME.to_string(), name.to_string());
        labels
    }

    fn check_volume_owner(&self, name: &str, volume: &VolumeInfo) -> Result<()> {
        let owner = volume.labels.get(LABEL_STORE);
        if owner.map(String::as_str) == Some(self.ownership.store_id()) {
            return Ok(());
        }
        Err(Error::VolumeNotOwned {
            name: name.to_string(),
            engine_name: volume.name.clone(),
            owner: owner.cloned(),
        })
    }

    /// The instance's volumes this store made (with sizes where the engine knows them).
    pub(crate) async fn list_volumes(&self, instance: &str, sizes: bool) -> Result<Vec<VolumeInfo>> {
        let all = self
            .timed(EngineOp::Volume, self.engine.list_volumes(instance, sizes))
            .await?;
        Ok(all
            .into_iter()
            .filter(|v| v.labels.get(LABEL_STORE).map(String::as_str) == Some(self.ownership.store_id()))
            .collect())
    }

    /// Removes the instance's volume `name`, if this store made it:
    /// [`Error::VolumeNotFound`] when there is none, [`Error::VolumeNotOwned`]
    /// when it is not this store's, [`Error::VolumeInUse`] while a container mounts it.
    pub(crate) async fn remove_volume(&self, instance: &str, name: &str) -> Result<()> {
        let engine_name = volume_engine_name(instance, name);
        let volume = self
            .timed(EngineOp::Volume, self.engine.inspect_volume(&engine_name))
            .await?
            .ok_or_else(|| Error::VolumeNotFound(name.to_string()))?;
        self.check_volume_owner(name, &volume)?;
        match self
            .timed(EngineOp::Volume, self.act(self.engine.remove_volume(&engine_name)))
            .await
        {
            Err(Error::VolumeInUse { pods, .. }) => Err(Error::VolumeInUse {
                name: name.to_string(),
                pods,
            }),
            other => other,
        }
    }

    /// Where `count` new replicas of `spec` go: the constraints each adds
    /// (volume pins recorded first, so fenced like every change).
    pub(crate) async fn place(
        &self,
        spec: &ContainerSpec,
        count: usize,
    ) -> Result<Vec<Vec<dubernetes_api::Constraint>>> {
        self.timed(EngineOp::Place, self.act(self.engine.place(spec, count)))
            .await
    }

    /// The nodes that run replicas, with the instance's running replicas on each.
    pub(crate) async fn nodes(&self, instance: &str) -> Result<Vec<dubernetes_api::Node>> {
        self.timed(EngineOp::Place, self.engine.nodes(instance)).await
    }

    /// Makes sure `image` is present, pulling it when it is not.
    pub(crate) async fn ensure_image(&self, image: &str, pull: &crate::engine::Pull) -> Result<()> {
        self.timed(EngineOp::EnsureImage, self.act(self.engine.ensure_image(image, pull)))
            .await
    }

    /// Creates a container without starting it; returns its id. Every
    /// container gets this store's labels here, so none can be made without them.
    pub(crate) async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut spec = spec.clone();
        spec.labels.extend(self.ownership.labels());
        self.timed(EngineOp::Create, self.act(self.engine.create(&spec))).await
    }

    /// Creates a container and starts it; returns its id. A replica publishes
    /// no host port: it joins the instance network, where the ingress reaches
    /// it by address.
    pub(crate) async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        let id = self.create(spec).await?;
        self.start(&id).await?;
        Ok(id)
    }

    /// Starts a container; "already started" is success.
    pub(crate) async fn start(&self, id: &str) -> Result<()> {
        self.timed(EngineOp::Start, self.act(self.engine.start(id))).await
    }

    /// Stops a container (its stop signal, then a kill after `grace`); a
    /// missing or stopped one is fine. The engine waits the grace period, so
    /// callers make this call without holding an engine slot.
    pub(crate) async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        self.timed(EngineOp::Stop, self.act(self.engine.stop(id, grace))).await
    }

    /// Removes a container at once (killing it if it runs); a missing one is fine.
    pub(crate) async fn remove(&self, id: &str) -> Result<()> {
        self.timed(EngineOp::Remove, self.act(self.engine.remove(id))).await
    }

    /// Sends a signal (e.g. `HUP`) to a container's main process.
    pub(crate) async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        self.timed(EngineOp::Signal, self.act(self.engine.signal(id, signal)))
            .await
    }

    /// Runs a command in a container; returns its exit code and combined output.
    pub(crate) async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, String)> {
        self.timed(EngineOp::Exec, self.act(self.engine.exec(id, cmd))).await
    }

    /// Writes one file into a container (created or running).
    pub(crate) async fn write_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        self.timed(
            EngineOp::WriteFile,
            self.act(self.engine.write_file(id, dir, file, content)),
        )
        .await
    }

    /// Writes one file of mode 0600 into a container (see [`crate::engine::Engine::write_private_file`]).
    pub(crate) async fn write_private_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        self.timed(
            EngineOp::WriteFile,
            self.act(self.engine.write_private_file(id, dir, file, content)),
        )
        .await
    }

    /// Writes several files (paths relative to `dir`) in one engine call.
    pub(crate) async fn write_files(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        self.timed(EngineOp::WriteFiles, self.act(self.engine.write_files(id, dir, files)))
            .await
    }

    /// Reads files of a container (see [`crate::engine::Engine::read_files`]).
    pub(crate) async fn read_files(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        self.timed(EngineOp::ReadFiles, self.engine.read_files(id, path, max_bytes))
            .await
    }

    /// Whether a host directory of this process can be bound into a container.
    pub(crate) fn engine_is_local(&self) -> bool {
        self.engine.is_local()
    }

    /// Replaces files in a host directory bound into a container, each
    /// atomically (written beside it, then renamed over it), unless the
    /// term is over: these writes change what the ingress routes to, so
    /// they are fenced like engine calls.
    pub(crate) async fn write_bound_files(&self, dir: &std::path::Path, files: Vec<(String, Vec<u8>)>) -> Result<()> {
        let dir = dir.to_path_buf();
        self.act(async move {
            tokio::task::spawn_blocking(move || crate::engine::bind::replace_files(&dir, &files))
                .await
                .map_err(|e| Error::Ingress(format!("writing endpoint files: {e}")))?
        })
        .await
    }

    /// The engine's event stream for this instance's containers.
    pub(crate) fn events(&self, instance: &str) -> BoxStream<'static, Result<EngineEvent>> {
        self.engine.events(instance)
    }

    /// The last `tail` log lines of a container (stdout and stderr).
    pub(crate) async fn log_tail(&self, id: &str, tail: usize) -> Result<String> {
        self.timed(EngineOp::LogTail, self.engine.log_tail(id, tail)).await
    }

    /// Whether a container runs, read from the container itself (not the list view).
    pub(crate) async fn is_running(&self, id: &str) -> Result<bool> {
        self.timed(EngineOp::IsRunning, self.engine.is_running(id)).await
    }

    /// The host port the engine bound for `container_port` of a container.
    pub(crate) async fn published_port(&self, id: &str, container_port: u16) -> Result<Option<u16>> {
        self.timed(EngineOp::PublishedPort, self.engine.published_port(id, container_port))
            .await
    }
}
