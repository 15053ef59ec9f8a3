//! The public handle: build an instance, apply specs, read status, wait, shut down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::change::Change;
use crate::controller::Context;
use crate::data_dir::DataDirLock;
use crate::error::{Error, Result};
use crate::owned_engine::{Observed, Runtime};
use crate::spec::PodSpec;
use crate::store::{ApplyOutcome, Event, Revision, StoredPod};
use crate::watch::{Feed, WatchEvent};
pub use dubernetes_api::{Condition, ConditionType, Phase, Pod, PodStatus, Replica};

pub(crate) mod cron;
mod diagnostics;
pub(crate) mod exec;
mod handle;
pub(crate) mod runs;
mod terms;
mod views;

pub use diagnostics::Diagnostics;

pub(crate) use handle::Handle;
use views::tls_certificate_name;

/// A running orchestrator instance. Cheap to clone.
#[derive(Clone)]
pub struct Dubernetes {
    pub(crate) handle: Arc<Handle>,
    pub(crate) max_pods: u32,
    pub(crate) max_replicas: u32,
    pub(crate) feed: Arc<Feed>,
    /// The absolute data dir (None: in memory).
    pub(crate) data_dir: Option<PathBuf>,
    /// Held for the life of the process (and every clone of the handle).
    pub(crate) _lock: Option<Arc<DataDirLock>>,
    /// One-off runs: their limit, retention and reaper's memory (`runs.rs`).
    pub(crate) runs: Arc<runs::RunSettings>,
}

impl std::fmt::Debug for Dubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dubernetes")
            .field("instance", &self.handle.settings.instance)
            .finish()
    }
}

impl Dubernetes {
    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.handle.settings.instance
    }

    /// Which engine this orchestrator drives (`docker` or `swarm`).
    pub fn backend(&self) -> crate::engine::Backend {
        self.handle.runtime.backend()
    }

    /// The Docker API version negotiated with the engine.
    pub fn engine_api_version(&self) -> String {
        self.handle.runtime.api_version()
    }

    /// The absolute data dir the store lives in (None: in memory).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// The instance's metrics, for the HTTP layer to record requests and streams into.
    pub fn metrics(&self) -> &crate::Metrics {
        self.handle.runtime.metrics()
    }

    /// Every metric in the Prometheus text format (see `docs/metrics.md`); the
    /// per-pod replica counts are read from the status view now. No engine call.
    pub async fn metrics_text(&self) -> Result<String> {
        let pods = self.list().await?;
        Ok(self.metrics().encode(&pods))
    }

    /// This store's id: the [`LABEL_STORE`](crate::labels::LABEL_STORE) of every container it creates.
    pub fn store_id(&self) -> &str {
        self.handle.runtime.ownership().store_id()
    }

    /// Counters and states for checking the orchestrator from outside (tests,
    /// benchmarks, the server's `/v1/ingress` and `/v1/ownership` views):
    /// ingress reloads and endpoint writes, held and foreign containers.
    pub fn diagnostics(&self) -> Diagnostics<'_> {
        Diagnostics { orchestrator: self }
    }

    /// Validates a spec without storing anything; returns what [`apply`](Self::apply) would do.
    pub async fn dry_run(&self, spec: &PodSpec) -> Result<ApplyOutcome> {
        self.validate(spec)?;
        let spec = &self.with_secret_versions(spec.clone()).await?;
        self.check_host(spec).await?;
        self.check_listen(spec).await?;
        if !spec.expose.is_empty() {
            let others = self.handle.store.list().await?;
            crate::store::listen_clash(spec, others.iter().map(|p| &p.spec))?;
        }
        self.check_tls(spec).await?;
        Ok(match self.handle.store.get(&spec.name).await? {
            None => ApplyOutcome::Created,
            Some(p) if p.spec == *spec => ApplyOutcome::Unchanged,
            Some(_) => ApplyOutcome::Configured,
        })
    }

    /// Refuses an `expose` entry listening on the ingress's own HTTP or
    /// HTTPS port on the host (the other pods' ports: the store, in its write).
    async fn check_listen(&self, spec: &PodSpec) -> Result<()> {
        if spec.expose.is_empty() {
            return Ok(());
        }
        let ctx = self.handle.ctx();
        let http = match self.handle.ingress.listen.port() {
            0 => ctx.ingress.port().await,
            p => Some(p),
        };
        let https = match self.handle.ingress.tls_listen.map(|a| a.port()) {
            Some(0) => ctx.ingress.tls_port().await,
            p => p,
        };
        for (i, e) in spec.expose.iter().enumerate() {
            let Ok(addr) = e.listen_addr() else { continue };
            for (port, what) in [(http, "HTTP"), (https, "HTTPS")] {
                if port == Some(addr.port()) {
                    return Err(Error::ListenTaken {
                        field: format!("expose[{i}].listen"),
                        port: addr.port(),
                        owner: format!("the ingress's {what} listener"),
                    });
                }
            }
        }
        Ok(())
    }

    async fn check_host(&self, spec: &PodSpec) -> Result<()> {
        if spec.host().is_none() {
            return Ok(());
        }
        let others = self.handle.store.list().await?;
        crate::store::route_clash(spec, others.iter().map(|p| &p.spec))
    }

    /// The spec's own validation plus this instance's limits.
    fn validate(&self, spec: &PodSpec) -> Result<()> {
        spec.validate()?;
        if spec.replicas > self.max_replicas {
            return Err(Error::Invalid(crate::spec::ValidationError::new(
                spec.name.clone(),
                vec![crate::spec::FieldError::new(
                    "replicas",
                    format!(
                        "{} is more than this server's limit of {} (--max-replicas)",
                        spec.replicas, self.max_replicas
                    ),
                )],
            )));
        }
        Ok(())
    }

    /// Creates or updates a pod (idempotent) and wakes its reconcile.
    pub async fn apply(&self, spec: PodSpec) -> Result<(Pod, ApplyOutcome)> {
        self.apply_if(spec, None).await
    }

    /// Like [`apply`](Self::apply), but only if the pod is still at generation
    /// `expected` (when given): optimistic concurrency for read-modify-write
    /// clients. Fails with [`Error::StaleGeneration`] (nothing written) when
    /// someone changed the pod since, and [`Error::NotFound`] when it is gone.
    pub async fn apply_if(&self, spec: PodSpec, expected: Option<i64>) -> Result<(Pod, ApplyOutcome)> {
        self.validate(&spec)?;
        self.check_listen(&spec).await?;
        let spec = self.with_secret_versions(spec).await?;
        // The TLS secret is checked by the store, in the write's transaction.
        let (stored, outcome) = self.handle.store.upsert_checked(&spec, expected, self.max_pods).await?;
        let ownership = self.handle.runtime.ownership();
        if ownership.has_held(&spec.name) {
            // Adopted containers of this pod become its replicas (the plan
            // keeps those of the current revision). Only after the pod is
            // stored: released earlier, a failed write would leave them
            // managed without a pod, and so removed as orphans.
            self.handle.store.release_held(&spec.name).await?;
            let ids = ownership.release_held(&spec.name);
            tracing::info!(pod = %spec.name, containers = ids.len(), "adopted containers now belong to this pod");
            self.handle.ctx().wake(&spec.name);
        }
        if outcome != ApplyOutcome::Unchanged {
            self.handle
                .ctx()
                .forget_create_failure(&spec.name, (stored.created_at, stored.generation));
            // A risk the spec takes on purpose or by mistake (several writers
            // on one volume) is said where the user looks: the apply's answer
            // (`ApplyResponse::warnings`) and the pod's events.
            for warning in spec.warnings() {
                self.handle
                    .ctx()
                    .event(&spec.name, "Warning", "SharedVolume", &warning)
                    .await;
            }
            self.handle.ctx().notify(Change::Pod {
                name: spec.name.clone(),
            });
            self.handle.ctx().wake(&spec.name);
            self.handle.ctx().wake_ingress();
            if spec.tls() == Some(&crate::spec::Tls::Auto)
                && let Some(acme) = self.handle.ctx().acme.get()
            {
                acme.wake();
            }
        }
        let pod = self.view(stored).await?;
        Ok((pod, outcome))
    }

    /// Sets the number of replicas of a pod, keeping every other field as it
    /// is even when other clients change them at the same time (the write is
    /// conditional on the generation read, and retried when it lost a race).
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<Pod> {
        let mut attempts = 0;
        loop {
            let stored = self.stored(name).await?;
            let mut spec = stored.spec;
            spec.replicas = replicas;
            match self.apply_if(spec, Some(stored.generation)).await {
                Err(Error::StaleGeneration { .. }) if attempts < 10 => attempts += 1,
                other => return other.map(|(pod, _)| pod),
            }
        }
    }

    /// The stored pod, or [`Error::NotFound`].
    async fn stored(&self, name: &str) -> Result<crate::store::StoredPod> {
        self.handle
            .store
            .get(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// One pod with its replicas, as the controller last observed them (no engine call).
    pub async fn get(&self, name: &str) -> Result<Pod> {
        let stored = self.stored(name).await?;
        self.view(stored).await
    }

    /// Every pod, by name. Reads the store and the controller's observed
    /// state (kept current by Docker events and resyncs); no engine call.
    pub async fn list(&self) -> Result<Vec<Pod>> {
        let pods = self.handle.store.list().await?;
        if let Some(pg) = self.standby_store() {
            let mut views: std::collections::HashMap<String, String> = pg.views().await?.into_iter().collect();
            return Ok(pods
                .into_iter()
                .map(|p| {
                    let published = views.remove(&p.spec.name);
                    self.standby_view(p, published.as_deref())
                })
                .collect());
        }
        let ctx = self.handle.ctx();
        // Certificates in one read, and only when a pod serves HTTPS.
        let certificates: std::collections::HashMap<String, crate::store::StoredCertificate> =
            if pods.iter().any(|p| p.spec.tls().is_some()) {
                self.handle
                    .store
                    .certificates()
                    .await?
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect()
            } else {
                std::collections::HashMap::new()
            };
        Ok(pods
            .into_iter()
            .map(|p| {
                let observation = ctx.observe_pod(&p.spec);
                let tls = tls_certificate_name(&p.spec)
                    .map(|name| self.tls_status_of(&p.spec, certificates.get(&name).cloned()));
                let mut pod = crate::status::pod_view(p, observation);
                pod.status.tls = tls.flatten();
                pod
            })
            .collect())
    }

    /// Deletes a pod; its containers are removed and its route dropped.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.delete_if(name, None).await
    }

    /// Like [`delete`](Self::delete), but only if the pod is still at
    /// generation `expected` (when given), else [`Error::StaleGeneration`].
    pub async fn delete_if(&self, name: &str, expected: Option<i64>) -> Result<()> {
        if !self.handle.store.delete_checked(name, expected).await? {
            return Err(Error::NotFound(name.to_string()));
        }
        self.handle.ctx().notify(Change::Pod { name: name.to_string() });
        self.handle.ctx().wake(name);
        self.handle.ctx().wake_ingress();
        Ok(())
    }

    /// The revisions of a pod, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<Revision>> {
        if self.handle.store.get(name).await?.is_none() {
            return Err(Error::NotFound(name.to_string()));
        }
        self.handle.store.revisions(name).await
    }

    /// Rolls a pod's containers back to an earlier revision: `to` names it,
    /// or by default the latest revision before the current one that ran
    /// something else. Replicas, host and policies stay as they are; the
    /// undo itself is a new revision.
    pub async fn undo(&self, name: &str, to: Option<i64>) -> Result<(Pod, ApplyOutcome)> {
        let stored = self.stored(name).await?;
        let revisions = self.handle.store.revisions(name).await?;
        let current = stored.spec.revision_hash();
        let target = match to {
            Some(n) => revisions
                .iter()
                .find(|r| r.number == n)
                .ok_or_else(|| Error::NoRevision {
                    pod: name.to_string(),
                    number: Some(n),
                })?,
            None => revisions
                .iter()
                .rev()
                .find(|r| r.hash != current)
                .ok_or_else(|| Error::NoRevision {
                    pod: name.to_string(),
                    number: None,
                })?,
        };
        self.apply(stored.spec.with_template_of(&target.spec)).await
    }

    /// Recent events, of one pod or all, oldest first.
    pub async fn events(&self, pod: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        self.handle.store.events(pod, i64::from(limit)).await
    }

    /// Changes as they happen (pods reconciled, ingress reloaded).
    pub fn watch(&self) -> impl Stream<Item = Change> + Send + 'static {
        // A watcher that lags behind skips what it missed; it re-reads state on the next change.
        BroadcastStream::new(self.handle.changes.subscribe()).filter_map(|c| async move { c.ok() })
    }

    /// The change feed: every change of a pod (spec, status, replicas) and
    /// every new event, numbered by an increasing version.
    ///
    /// With `since`, the stream starts with the changes after that version (a
    /// client that lost its connection resumes where it was); a version the
    /// feed no longer holds is [`Error::Expired`]. Without it, the stream
    /// starts with every pod as `ADDED` at the current version. A watcher that
    /// falls too far behind gets one `Expired` item and the stream ends.
    pub fn watch_from(&self, since: Option<u64>) -> Result<impl Stream<Item = Result<WatchEvent>> + Send + use<>> {
        self.feed.subscribe(since)
    }

    /// The newest version of the change feed: watch from it to see what
    /// happens after a list.
    pub fn watch_version(&self) -> u64 {
        self.feed.version()
    }

    /// A pod's logs: every replica's, interleaved as lines arrive, each line
    /// tagged with its replica. With `follow`, the stream goes on until the
    /// replicas that existed at the start stop, or the caller drops it; with
    /// [`LogOptions::limits`](crate::LogOptions::limits) too, a followed read
    /// past them is refused ([`Error::Limit`] past the per-request cap,
    /// [`Error::TooManyStreams`] past the total). Lines are cut at
    /// [`MAX_LOG_LINE_BYTES`](crate::limits::MAX_LOG_LINE_BYTES).
    pub async fn logs(&self, name: &str, options: crate::logs::LogOptions) -> Result<crate::logs::LogLines> {
        if self.handle.store.get(name).await?.is_none() {
            return Err(Error::NotFound(name.to_string()));
        }
        let prefix = format!("dub-{}-", self.handle.settings.instance);
        let containers = self.containers(Some(name)).await?;
        // Replicas, and one-off runs (`dubectl run --detach`), or only the run asked for.
        let replicas: Vec<&Observed> = containers
            .iter()
            .filter(|c| match options.run.as_deref() {
                None => c.role == "replica" || c.role == crate::labels::ROLE_RUN,
                Some(run) => {
                    c.role == crate::labels::ROLE_RUN
                        && c.labels.get(crate::labels::LABEL_RUN).map(String::as_str) == Some(run)
                }
            })
            .collect();
        let permit = match &options.limits {
            Some(limits) if options.follow => Some(limits.acquire(name, replicas.len())?),
            _ => None,
        };
        let streams = replicas
            .iter()
            .map(|c| {
                let replica = c.name.trim_start_matches('/').trim_start_matches(&prefix).to_string();
                crate::logs::replica_lines(&self.handle.runtime, &c.id, replica, &options)
            })
            .collect();
        Ok(crate::logs::merge(streams, permit))
    }

    /// The host port of the ingress, once it runs.
    pub async fn ingress_port(&self) -> Option<u16> {
        self.handle.ctx().ingress.port().await
    }

    /// Waits until the pod's current generation is fully rolled out: every
    /// desired replica runs the current revision, is routed, and no old one is left.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> Result<Pod> {
        let mut changes = Box::pin(self.watch());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pod = self.get(name).await?;
            if pod.is_converged() {
                return Ok(pod);
            }
            let wait = tokio::time::timeout_at(deadline, async {
                // A change, or a periodic look in case a change was missed.
                let _ = tokio::time::timeout(Duration::from_millis(500), futures::StreamExt::next(&mut changes)).await;
            });
            if wait.await.is_err() {
                let s = &pod.status;
                return Err(Error::Timeout(format!(
                    "pod {name}: {} of {} replicas ready, {} up to date after {timeout:?}{}",
                    s.ready_replicas,
                    s.desired_replicas,
                    s.updated_replicas,
                    s.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                )));
            }
        }
    }

    /// This instance's containers (every role) the store manages, of one pod or all.
    pub(crate) async fn containers(&self, pod: Option<&str>) -> Result<Vec<Observed>> {
        self.handle
            .runtime
            .list(&self.handle.settings.instance, &self.handle.settings.network, pod)
            .await
    }

    /// Waits until a deleted pod's containers are all gone.
    pub async fn wait_deleted(&self, name: &str, timeout: Duration) -> Result<()> {
        let mut changes = Box::pin(self.watch());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.containers(Some(name)).await?;
            if left.is_empty() && self.handle.store.get(name).await?.is_none() {
                return Ok(());
            }
            let wait = tokio::time::timeout_at(deadline, async {
                let _ = tokio::time::timeout(Duration::from_millis(500), futures::StreamExt::next(&mut changes)).await;
            });
            if wait.await.is_err() {
                return Err(Error::Timeout(format!(
                    "pod {name} still has {} container(s)",
                    left.len()
                )));
            }
        }
    }

    /// Stops the controller. Containers keep running; a new instance with the
    /// same name adopts them.
    pub async fn shutdown(&self) {
        self.stop_tasks().await;
        self.handle.store.close().await;
    }

    /// Stops the controller of the current term, then the handle's own tasks
    /// (feed, leadership: the lock goes with its connection, after the
    /// controller stopped, so no other server leads while this one acts).
    async fn stop_tasks(&self) {
        let ctx = self.handle.ctx();
        ctx.shutdown.cancel();
        ctx.tasks.close();
        ctx.tasks.wait().await;
        self.handle.shutdown.cancel();
        self.handle.tasks.close();
        self.handle.tasks.wait().await;
        // A term that began while the first one was stopping.
        let ctx = self.handle.ctx();
        ctx.shutdown.cancel();
        ctx.tasks.close();
        ctx.tasks.wait().await;
    }

    /// Whether this server leads its instance: acts on the engine (reconcile,
    /// ingress). Always true with SQLite (one server per store); with a
    /// shared PostgreSQL store, the one server holding the leader lock.
    pub fn is_leader(&self) -> bool {
        self.handle.leading()
    }

    /// Which kind of store this instance runs on: `sqlite` or `postgres`.
    pub fn store_kind(&self) -> &'static str {
        if self.handle.store.postgres().is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// The PostgreSQL store, when this server shares one and does not lead:
    /// its views come from what the leader published.
    fn standby_store(&self) -> Option<&crate::store::postgres::PgStore> {
        self.handle.store.postgres().filter(|_| !self.handle.leading())
    }

    /// A pod as a standby shows it: desired state from the store, observed
    /// state as the leader last published it (not yet observed when the
    /// leader has not seen this generation, or published nothing yet).
    fn standby_view(&self, stored: StoredPod, published: Option<&str>) -> Pod {
        let published: Option<Pod> = published.and_then(|json| serde_json::from_str(json).ok());
        match published {
            Some(mut pod) => {
                pod.status.desired_replicas = stored.spec.desired_replicas();
                pod.name = stored.spec.name.clone();
                pod.spec = stored.spec;
                pod.generation = stored.generation;
                pod.created_at = stored.created_at;
                pod.updated_at = stored.updated_at;
                pod
            }
            None => {
                let observation = self.handle.ctx().observe_pod(&stored.spec);
                crate::status::pod_view(stored, observation)
            }
        }
    }

    /// Stops the controller and removes every container and the network of
    /// this instance. Pods stay in the store, and so do named volumes (data:
    /// only [`delete_volume`](Self::delete_volume) removes one).
    pub async fn purge(&self) -> Result<()> {
        self.stop_tasks().await;
        remove_everything(
            &self.handle.runtime,
            &self.handle.settings.instance,
            &self.handle.settings.network,
        )
        .await?;
        self.handle.store.close().await;
        Ok(())
    }

    /// Stops the controller without waiting for it and returns a future that
    /// removes every container and the network of this instance through a new
    /// engine connection. For `Drop` impls that must finish the clean-up on
    /// another thread while the runtime the controller lives on is blocked.
    #[cfg(feature = "testing")]
    pub(crate) fn detach_for_purge(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.handle.ctx().shutdown.cancel();
        self.handle.shutdown.cancel();
        let instance = self.handle.settings.instance.clone();
        let network = self.handle.settings.network.clone();
        let runtime = self.handle.runtime.clone();
        async move {
            let runtime = runtime.reconnect().await?;
            remove_everything(&runtime, &instance, &network).await
        }
    }

    /// The host port the ingress serves HTTPS on, once it runs with one.
    pub async fn ingress_tls_port(&self) -> Option<u16> {
        self.handle.ctx().ingress.tls_port().await
    }
}

async fn remove_everything(runtime: &Runtime, instance: &str, network: &str) -> Result<()> {
    // Only what this store owns: a foreign container of the instance stays.
    let containers = runtime.list_owned(instance, network).await?;
    let removals = futures::future::join_all(containers.iter().map(|c| runtime.remove(&c.id))).await;
    removals.into_iter().collect::<Result<Vec<()>>>()?;
    // Docker 20.10 sometimes refuses to remove a network whose containers are
    // all gone ("has active endpoints") for a moment: retry briefly, then
    // warn. An empty network left behind is harmless and reused on the next start.
    let mut last = None;
    for attempt in 0..3u32 {
        match runtime.remove_network(network).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
    }
    if let Some(e) = last {
        tracing::warn!(network, error = %e, "could not remove the instance network; leaving it behind");
    }
    Ok(())
}
