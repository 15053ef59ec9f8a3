//! The public handle: build an instance, apply specs, read status, wait, shut down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;

pub use crate::builder::DubernetesBuilder;
use crate::controller::{Change, Context};
use crate::data_dir::DataDirLock;
use crate::error::{Error, Result};
use crate::runtime::{ContainerState, Observed, Runtime};
use crate::spec::PodSpec;
use crate::store::{ApplyOutcome, Event, Revision, StoredPod};
use crate::watch::{Feed, WatchEvent};

/// A pod: its spec, bookkeeping, and what the engine shows of it right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// The desired state.
    pub spec: PodSpec,
    /// Increases on every change of the spec.
    pub generation: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Observed status.
    pub status: PodStatus,
    /// The pod's containers, as the engine reports them.
    pub replicas: Vec<Replica>,
}

/// The observed status of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct PodStatus {
    /// The generation the controller last converged to.
    pub observed_generation: i64,
    /// `replicas` of the spec.
    pub desired_replicas: u32,
    /// Replicas running the current revision and routed.
    pub ready_replicas: u32,
    /// Replicas (in any live state) of the current revision.
    pub updated_replicas: u32,
    /// Live replicas of any revision.
    pub current_replicas: u32,
    /// The current revision hash.
    pub revision: String,
    /// `Running`, `Progressing`, `Stopped` (0 replicas), or `Failing`.
    pub phase: String,
    /// A machine-readable reason when something is wrong, e.g. `CrashLoopBackOff`.
    pub reason: Option<String>,
    /// What is wrong, for people.
    pub message: Option<String>,
    /// The number of the latest revision (see [`Dubernetes::history`]).
    pub revision_number: i64,
    /// `Available` and `Progressing`, like a Kubernetes Deployment's.
    pub conditions: Vec<Condition>,
    /// How many times replicas exited and were replaced.
    pub restarts: u32,
    /// Exit code of the last replica that exited.
    pub last_exit_code: Option<i64>,
}

/// One aspect of a pod's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Condition {
    /// `Available` or `Progressing`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the condition holds.
    pub status: bool,
    /// A CamelCase reason, e.g. `RolloutComplete` or `ProgressDeadlineExceeded`.
    pub reason: String,
    /// Details, for people.
    pub message: String,
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Replica {
    /// Container name.
    pub name: String,
    /// Short container id.
    pub id: String,
    /// Engine state.
    pub state: ContainerState,
    /// Engine status text, e.g. `Up 3 minutes`.
    pub status: String,
    /// Revision hash it runs.
    pub revision: String,
    /// Runs the current revision.
    pub up_to_date: bool,
    /// Running, passing its readiness check, and routed by the ingress.
    pub ready: bool,
    /// The last failure of its readiness check, if it is failing.
    pub check_error: Option<String>,
    /// Address on the instance network.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created: i64,
}

/// A running orchestrator instance. Cheap to clone.
#[derive(Clone)]
pub struct Dubernetes {
    pub(crate) ctx: Arc<Context>,
    pub(crate) max_pods: u32,
    pub(crate) max_replicas: u32,
    pub(crate) feed: Arc<Feed>,
    /// The absolute data dir (None: in memory).
    pub(crate) data_dir: Option<PathBuf>,
    /// Held for the life of the process (and every clone of the handle).
    pub(crate) _lock: Option<Arc<DataDirLock>>,
}

impl std::fmt::Debug for Dubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dubernetes")
            .field("instance", &self.ctx.settings.instance)
            .finish()
    }
}

impl Dubernetes {
    /// A builder with defaults: instance `default`, in-memory store, official nginx ingress on port 80.
    pub fn builder() -> DubernetesBuilder {
        DubernetesBuilder::default()
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.ctx.settings.instance
    }

    /// The Docker API version negotiated with the engine.
    pub fn engine_api_version(&self) -> String {
        self.ctx.runtime.api_version()
    }

    /// The absolute data dir the store lives in (None: in memory).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// This store's id: the [`LABEL_STORE`](crate::LABEL_STORE) of every container it creates.
    pub fn store_id(&self) -> &str {
        self.ctx.runtime.ownership().store_id()
    }

    /// Containers adopted with `adopt_foreign` whose pod is not in the store:
    /// left alone until a pod of that name is applied.
    pub fn held_containers(&self) -> usize {
        self.ctx.runtime.ownership().held_count()
    }

    /// Containers of this instance seen since the start that belong to
    /// another store (left alone; logged once each).
    pub fn foreign_containers(&self) -> usize {
        self.ctx.runtime.ownership().foreign_count()
    }

    /// Validates a spec without storing anything; returns what [`apply`](Self::apply) would do.
    pub async fn dry_run(&self, spec: &PodSpec) -> Result<ApplyOutcome> {
        self.validate(spec)?;
        self.check_host(spec).await?;
        Ok(match self.ctx.store.get(&spec.name).await? {
            None => ApplyOutcome::Created,
            Some(p) if p.spec == *spec => ApplyOutcome::Unchanged,
            Some(_) => ApplyOutcome::Configured,
        })
    }

    async fn check_host(&self, spec: &PodSpec) -> Result<()> {
        if let Some(host) = spec.host() {
            for other in self.ctx.store.list().await? {
                if other.spec.name != spec.name && other.spec.host() == Some(host) {
                    return Err(Error::HostTaken {
                        host: host.to_string(),
                        owner: Some(other.spec.name.clone()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The spec's own validation plus this instance's limits.
    fn validate(&self, spec: &PodSpec) -> Result<()> {
        spec.validate()?;
        if spec.replicas > self.max_replicas {
            return Err(Error::Invalid(crate::spec::ValidationError {
                pod: spec.name.clone(),
                problems: vec![crate::spec::FieldError::new(
                    "replicas",
                    format!(
                        "{} is more than this server's limit of {} (--max-replicas)",
                        spec.replicas, self.max_replicas
                    ),
                )],
            }));
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
        let (stored, outcome) = self.ctx.store.upsert_checked(&spec, expected, self.max_pods).await?;
        let ownership = self.ctx.runtime.ownership();
        if ownership.has_held(&spec.name) {
            // Adopted containers of this pod become its replicas (the plan
            // keeps those of the current revision). Only after the pod is
            // stored: released earlier, a failed write would leave them
            // managed without a pod, and so removed as orphans.
            self.ctx.store.release_held(&spec.name).await?;
            let ids = ownership.release_held(&spec.name);
            tracing::info!(pod = %spec.name, containers = ids.len(), "adopted containers now belong to this pod");
            self.ctx.wake(&spec.name);
        }
        if outcome != ApplyOutcome::Unchanged {
            self.ctx.notify(Change::Pod {
                name: spec.name.clone(),
            });
            self.ctx.wake(&spec.name);
            self.ctx.wake_ingress();
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
            let stored = self
                .ctx
                .store
                .get(name)
                .await?
                .ok_or_else(|| Error::NotFound(name.to_string()))?;
            let mut spec = stored.spec;
            spec.replicas = replicas;
            match self.apply_if(spec, Some(stored.generation)).await {
                Err(Error::StaleGeneration { .. }) if attempts < 10 => attempts += 1,
                other => return other.map(|(pod, _)| pod),
            }
        }
    }

    /// One pod with its replicas, as the controller last observed them (no engine call).
    pub async fn get(&self, name: &str) -> Result<Pod> {
        let stored = self
            .ctx
            .store
            .get(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        self.view(stored).await
    }

    /// Every pod, by name. Reads the store and the controller's observed
    /// state (kept current by Docker events and resyncs); no engine call.
    pub async fn list(&self) -> Result<Vec<Pod>> {
        let pods = self.ctx.store.list().await?;
        Ok(pods
            .into_iter()
            .map(|p| {
                let observation = self.ctx.observe_pod(&p.spec);
                view_of(p, observation)
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
        if !self.ctx.store.delete_checked(name, expected).await? {
            return Err(Error::NotFound(name.to_string()));
        }
        self.ctx.notify(Change::Pod { name: name.to_string() });
        self.ctx.wake(name);
        self.ctx.wake_ingress();
        Ok(())
    }

    /// The revisions of a pod, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<Revision>> {
        if self.ctx.store.get(name).await?.is_none() {
            return Err(Error::NotFound(name.to_string()));
        }
        self.ctx.store.revisions(name).await
    }

    /// Rolls a pod's containers back to an earlier revision: `to` names it,
    /// or by default the latest revision before the current one that ran
    /// something else. Replicas, host and policies stay as they are; the
    /// undo itself is a new revision.
    pub async fn undo(&self, name: &str, to: Option<i64>) -> Result<(Pod, ApplyOutcome)> {
        let stored = self
            .ctx
            .store
            .get(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let revisions = self.ctx.store.revisions(name).await?;
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
        self.ctx.store.events(pod, i64::from(limit)).await
    }

    /// Changes as they happen (pods reconciled, ingress reloaded).
    pub fn watch(&self) -> impl Stream<Item = Change> + Send + 'static {
        // A watcher that lags behind skips what it missed; it re-reads state on the next change.
        BroadcastStream::new(self.ctx.changes.subscribe()).filter_map(|c| async move { c.ok() })
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
    /// [`MAX_LOG_LINE_BYTES`](crate::MAX_LOG_LINE_BYTES).
    pub async fn logs(&self, name: &str, options: crate::logs::LogOptions) -> Result<crate::logs::LogLines> {
        if self.ctx.store.get(name).await?.is_none() {
            return Err(Error::NotFound(name.to_string()));
        }
        let prefix = format!("dub-{}-", self.ctx.settings.instance);
        let containers = self
            .ctx
            .runtime
            .list(&self.ctx.settings.instance, &self.ctx.settings.network, Some(name))
            .await?;
        let replicas: Vec<&Observed> = containers.iter().filter(|c| c.role == "replica").collect();
        let permit = match &options.limits {
            Some(limits) if options.follow => Some(limits.acquire(name, replicas.len())?),
            _ => None,
        };
        let streams = replicas
            .iter()
            .map(|c| {
                let replica = c.name.trim_start_matches('/').trim_start_matches(&prefix).to_string();
                crate::logs::replica_lines(&self.ctx.runtime, &c.id, replica, &options)
            })
            .collect();
        Ok(crate::logs::merge(streams, permit))
    }

    pub(crate) fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.ctx.shutdown.clone()
    }

    pub(crate) async fn store_last_event_id(&self) -> Result<i64> {
        self.ctx.store.last_event_id().await
    }

    pub(crate) async fn store_events_after(&self, after: i64) -> Result<Vec<Event>> {
        self.ctx.store.events_after(after, 1000).await
    }

    /// The host port of the ingress, once it runs.
    pub async fn ingress_port(&self) -> Option<u16> {
        self.ctx.ingress.port().await
    }

    /// How many nginx configs the ingress made live since this handle started
    /// (reloads plus fresh starts of the ingress container).
    pub fn ingress_reloads(&self) -> u64 {
        self.ctx.ingress.reloads()
    }

    /// Pods whose routes the live nginx config leaves out because nginx
    /// rejected them, with nginx's message (also in each pod's status, reason
    /// `IngressRejected`).
    pub fn ingress_rejections(&self) -> std::collections::BTreeMap<String, String> {
        (*self.ctx.ingress.rejections()).clone()
    }

    /// The last ingress error, if the last sync failed.
    pub fn ingress_error(&self) -> Option<String> {
        self.ctx.ingress_error()
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

    /// Waits until a deleted pod's containers are all gone.
    pub async fn wait_deleted(&self, name: &str, timeout: Duration) -> Result<()> {
        let mut changes = Box::pin(self.watch());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self
                .ctx
                .runtime
                .list(&self.ctx.settings.instance, &self.ctx.settings.network, Some(name))
                .await?;
            if left.is_empty() && self.ctx.store.get(name).await?.is_none() {
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
        self.ctx.shutdown.cancel();
        self.ctx.tasks.close();
        self.ctx.tasks.wait().await;
        self.ctx.store.close().await;
    }

    /// Stops the controller and removes every container and the network of
    /// this instance. Pods stay in the store.
    pub async fn purge(&self) -> Result<()> {
        self.ctx.shutdown.cancel();
        self.ctx.tasks.close();
        self.ctx.tasks.wait().await;
        remove_everything(
            &self.ctx.runtime,
            &self.ctx.settings.instance,
            &self.ctx.settings.network,
        )
        .await?;
        self.ctx.store.close().await;
        Ok(())
    }

    /// Stops the controller without waiting for it and returns a future that
    /// removes every container and the network of this instance through a new
    /// engine connection. For `Drop` impls that must finish the clean-up on
    /// another thread while the runtime the controller lives on is blocked.
    #[cfg(feature = "testing")]
    pub(crate) fn detach_for_purge(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.ctx.shutdown.cancel();
        let instance = self.ctx.settings.instance.clone();
        let network = self.ctx.settings.network.clone();
        let runtime = self.ctx.runtime.clone();
        async move {
            let runtime = runtime.reconnect().await?;
            remove_everything(&runtime, &instance, &network).await
        }
    }

    /// How many containers of this instance exist on the engine (any role,
    /// any state); 0 after a successful [`purge`](Self::purge).
    pub async fn leftover_containers(&self) -> Result<usize> {
        Ok(self
            .ctx
            .runtime
            .list_owned(&self.ctx.settings.instance, &self.ctx.settings.network)
            .await?
            .len())
    }

    /// A pod as the controller last observed it; no engine call.
    async fn view(&self, stored: StoredPod) -> Result<Pod> {
        let observation = self.ctx.observe_pod(&stored.spec);
        Ok(view_of(stored, observation))
    }
}

/// A pod's view, from what is stored and what the controller observed.
fn view_of(stored: StoredPod, observation: crate::controller::PodObservation) -> Pod {
    let revision = stored.spec.revision_hash();
    let runtime_status = observation.status;
    let mut replicas: Vec<Replica> = observation
        .replicas
        .iter()
        .map(|r| {
            let c = &r.container;
            let up_to_date = c.revision.as_deref() == Some(revision.as_str());
            Replica {
                name: c.name.clone(),
                id: c.id.chars().take(12).collect(),
                state: c.state,
                status: c.status.clone(),
                revision: c.revision.clone().unwrap_or_default(),
                up_to_date,
                ready: r.ready,
                check_error: r.check_error.clone(),
                ip: c.ip.clone(),
                created: c.created,
            }
        })
        .collect();
    replicas.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let ready = replicas.iter().filter(|r| r.up_to_date && r.ready).count() as u32;
    let updated = replicas.iter().filter(|r| r.up_to_date && r.state.is_live()).count() as u32;
    // A replica being drained counts until it is removed, even once it
    // exited: the pod is not converged while it still exists.
    let current = observation
        .replicas
        .iter()
        .filter(|r| r.container.state.is_live() || r.draining)
        .count() as u32;
    let desired = stored.spec.replicas;
    let converged = ready == desired && updated == desired && current == desired;
    // A route nginx rejected (the other pods' routes were applied without it).
    let ingress_rejection = observation.ingress_rejection;
    let phase = if runtime_status.reason.is_some() || ingress_rejection.is_some() {
        "Failing"
    } else if !converged || runtime_status.observed_generation != stored.generation {
        "Progressing"
    } else if desired == 0 {
        "Stopped"
    } else {
        "Running"
    };
    let rollout = &stored.rollout;
    let rolled_back = rollout.reason.as_deref() == Some("Rollback");
    let (reason, message) = match (&runtime_status.reason, rollout.outcome.as_str()) {
        (Some(r), _) => (Some(r.clone()), runtime_status.message.clone()),
        (None, _) if ingress_rejection.is_some() => (
            Some("IngressRejected".to_string()),
            ingress_rejection.map(|m| format!("nginx rejected this pod's route: {m}")),
        ),
        (None, "failed") => (
            Some(
                rollout
                    .reason
                    .clone()
                    .unwrap_or_else(|| "ProgressDeadlineExceeded".to_string()),
            ),
            rollout.message.clone(),
        ),
        (None, _) if rolled_back => (Some("RolledBack".to_string()), rollout.message.clone()),
        (None, _) => (None, runtime_status.message.clone()),
    };
    let strategy = stored.spec.update_strategy();
    let min_available = desired.saturating_sub(strategy.max_unavailable);
    let available = ready >= min_available;
    let conditions = vec![
        Condition {
            kind: "Available".into(),
            status: available,
            reason: if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            }
            .into(),
            message: format!("{ready} of {desired} replicas ready (at least {min_available} needed)"),
        },
        match rollout.outcome.as_str() {
            "failed" => Condition {
                kind: "Progressing".into(),
                status: false,
                reason: "ProgressDeadlineExceeded".into(),
                message: rollout.message.clone().unwrap_or_default(),
            },
            "complete" => Condition {
                kind: "Progressing".into(),
                status: true,
                reason: "RolloutComplete".into(),
                message: format!("revision {} is fully rolled out", rollout.number),
            },
            _ => Condition {
                kind: "Progressing".into(),
                status: true,
                reason: if rolled_back {
                    "RollingBack"
                } else {
                    "NewRevisionProgressing"
                }
                .into(),
                message: format!(
                    "revision {}: {updated} of {desired} replicas updated, {ready} ready",
                    rollout.number
                ),
            },
        },
    ];
    Pod {
        name: stored.spec.name.clone(),
        generation: stored.generation,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        status: PodStatus {
            observed_generation: runtime_status.observed_generation,
            desired_replicas: desired,
            ready_replicas: ready,
            updated_replicas: updated,
            current_replicas: current,
            revision,
            revision_number: rollout.number,
            phase: phase.into(),
            reason,
            message,
            restarts: runtime_status.restarts,
            last_exit_code: runtime_status.last_exit_code,
            conditions,
        },
        spec: stored.spec,
        replicas,
    }
}

impl Pod {
    /// True when the current generation is fully rolled out and routed.
    pub fn is_converged(&self) -> bool {
        let s = &self.status;
        s.observed_generation == self.generation
            && s.ready_replicas == s.desired_replicas
            && s.updated_replicas == s.desired_replicas
            && s.current_replicas == s.desired_replicas
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
