//! The reconcile loop: observe (list containers by label) → plan (pure) → act
//! (bollard), per pod, level-triggered and edge-woken.
//!
//! Each pod has a tiny worker task with a one-slot wake channel: any number of
//! wakes while a reconcile runs coalesce into one more reconcile. Docker
//! events and API writes wake pods; a periodic resync (one container list for
//! the whole instance) catches anything missed. The ingress has its own
//! coalescing task.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::crashloop::{ExitCause, LABEL_SLOT, Slots};
use crate::error::{Error, Result};
use crate::health::{Health, Target};
use crate::ingress::{Ingress, Route};
use crate::plan::{Action, Desired, RemoveReason, plan, plan_gated};
use crate::rollout::{self, FailReason, Limits, Progress, RolloutObservation, Verdict, gate};
use crate::runtime::{
    ContainerState, LABEL_INSTANCE, LABEL_POD, LABEL_PORT, LABEL_REVISION, LABEL_ROLE, Observed, ReplicaTemplate,
    Runtime,
};
use crate::spec::PodSpec;
use crate::status;
use crate::store::{Store, StoredPod};

/// A change the controller made or saw, for watchers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// A pod's desired or observed state changed.
    Pod {
        /// The pod's name.
        name: String,
    },
    /// The ingress applied a new config.
    Ingress,
}

/// Crash-loop backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffSettings {
    /// Delay before the second restart in a row; doubles after that.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A replica that ran this long before it exited is replaced at once and
    /// resets the back-off; quicker exits in a row back off.
    pub reset_after: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PodRuntimeStatus {
    pub observed_generation: i64,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    /// The latest end of a replica slot's back-off (see [`crate::crashloop`]).
    pub next_allowed: Option<Instant>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub error_streak: u32,
}

/// Settings of the controller.
#[derive(Debug, Clone)]
pub(crate) struct ControllerSettings {
    pub instance: String,
    pub network: String,
    pub resync: Duration,
    pub stop_grace: Duration,
    pub engine_concurrency: usize,
    pub backoff: BackoffSettings,
    /// Pause between taking a replica out of the ingress and stopping it.
    pub drain: Duration,
}

pub(crate) struct Context {
    pub settings: ControllerSettings,
    pub store: Arc<dyn Store>,
    pub runtime: Runtime,
    pub ingress: Ingress,
    pub changes: broadcast::Sender<Change>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    draining: StdMutex<HashSet<String>>,
    status: StdMutex<HashMap<String, PodRuntimeStatus>>,
    workers: StdMutex<HashMap<String, mpsc::Sender<()>>>,
    engine_slots: Semaphore,
    ingress_wake: Notify,
    ingress_error: StdMutex<Option<String>>,
    health: Health,
    ingress_sync: tokio::sync::Mutex<()>,
    rollouts: StdMutex<HashMap<String, Progress>>,
    /// Crash-loop back-off per replica slot, by pod.
    slots: StdMutex<HashMap<String, Slots>>,
    /// Why replicas stopped, from the engine's `kill` and `oom` events, by
    /// container id; read when the exited replica is removed.
    exit_notes: StdMutex<HashMap<String, (ExitCause, Instant)>>,
    last_routes: StdMutex<HashMap<String, Vec<String>>>,
    observed: StdMutex<ObservedCache>,
    list_seq: AtomicU64,
}

/// What the engine last showed of this instance's replicas, by pod: every
/// container list the controller makes anyway (a reconcile lists its pod, an
/// ingress sync and a resync list the instance) refreshes it, so API reads
/// (`get`, `list`) never call the engine. Events wake reconciles, which list
/// again, so it lags the engine by at most one reconcile.
#[derive(Default)]
struct ObservedCache {
    /// Replicas of each pod, with the sequence number of the list they come from.
    pods: HashMap<String, (u64, Arc<[Observed]>)>,
}

impl ObservedCache {
    /// Applies a list of one pod's replicas taken at `seq`; an older list
    /// never overwrites a newer one.
    fn put_pod(&mut self, seq: u64, pod: &str, replicas: Vec<Observed>) {
        match self.pods.get(pod) {
            Some((newer, _)) if *newer > seq => {}
            // An empty list is kept (until the next full list) so that an
            // older list cannot bring removed containers back.
            _ => {
                self.pods.insert(pod.to_string(), (seq, replicas.into()));
            }
        }
    }

    /// Marks one replica exited (on its `die` event), ahead of the next list.
    fn mark_exited(&mut self, pod: &str, id: &str) {
        if let Some((_, replicas)) = self.pods.get_mut(pod)
            && replicas.iter().any(|c| c.id == id && c.state != ContainerState::Exited)
        {
            let updated: Vec<Observed> = replicas
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.id == id {
                        c.state = ContainerState::Exited;
                    }
                    c
                })
                .collect();
            *replicas = updated.into();
        }
    }

    /// Applies a list of the whole instance taken at `seq`.
    fn put_all(&mut self, seq: u64, containers: &[Observed]) {
        let mut by_pod: HashMap<&str, Vec<Observed>> = HashMap::new();
        for c in containers.iter().filter(|c| c.role == "replica") {
            if let Some(pod) = c.pod.as_deref() {
                by_pod.entry(pod).or_default().push(c.clone());
            }
        }
        self.pods
            .retain(|pod, (at, _)| *at > seq || by_pod.contains_key(pod.as_str()));
        for (pod, replicas) in by_pod {
            self.put_pod(seq, pod, replicas);
        }
    }
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Next {
    Done,
    Requeue(Duration),
    Gone,
}

impl Context {
    pub(crate) fn new(
        settings: ControllerSettings,
        store: Arc<dyn Store>,
        runtime: Runtime,
        ingress: Ingress,
    ) -> Arc<Context> {
        let (changes, _) = broadcast::channel(1024);
        Arc::new(Context {
            engine_slots: Semaphore::new(settings.engine_concurrency.max(1)),
            settings,
            store,
            runtime,
            ingress,
            changes,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            draining: StdMutex::new(HashSet::new()),
            status: StdMutex::new(HashMap::new()),
            workers: StdMutex::new(HashMap::new()),
            ingress_wake: Notify::new(),
            ingress_error: StdMutex::new(None),
            health: Health::default(),
            ingress_sync: tokio::sync::Mutex::new(()),
            rollouts: StdMutex::new(HashMap::new()),
            slots: StdMutex::new(HashMap::new()),
            exit_notes: StdMutex::new(HashMap::new()),
            last_routes: StdMutex::new(HashMap::new()),
            observed: StdMutex::new(ObservedCache::default()),
            list_seq: AtomicU64::new(0),
        })
    }

    /// Lists every container of the instance (one engine call) and refreshes the cache.
    pub(crate) async fn list_instance(&self) -> Result<Vec<Observed>> {
        let seq = self.list_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let containers = self
            .runtime
            .list(&self.settings.instance, &self.settings.network, None)
            .await?;
        lock(&self.observed).put_all(seq, &containers);
        Ok(containers)
    }

    /// Lists one pod's replicas (one engine call) and refreshes the cache.
    async fn list_pod(&self, pod: &str) -> Result<Vec<Observed>> {
        let seq = self.list_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let replicas: Vec<Observed> = self
            .runtime
            .list(&self.settings.instance, &self.settings.network, Some(pod))
            .await?
            .into_iter()
            .filter(|c| c.role == "replica")
            .collect();
        lock(&self.observed).put_pod(seq, pod, replicas.clone());
        Ok(replicas)
    }

    /// The replicas of a pod as last observed (no engine call).
    pub(crate) fn observed_replicas(&self, pod: &str) -> Arc<[Observed]> {
        lock(&self.observed)
            .pods
            .get(pod)
            .map(|(_, r)| Arc::clone(r))
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    pub(crate) fn pod_status(&self, pod: &str) -> PodRuntimeStatus {
        lock(&self.status).get(pod).cloned().unwrap_or_default()
    }

    pub(crate) fn is_draining(&self, id: &str) -> bool {
        lock(&self.draining).contains(id)
    }

    pub(crate) fn ingress_error(&self) -> Option<String> {
        lock(&self.ingress_error).clone()
    }

    pub(crate) fn notify(&self, change: Change) {
        // No receiver is fine.
        let _ = self.changes.send(change);
    }

    /// Wakes a pod's reconcile; wakes while one runs coalesce into one more.
    pub(crate) fn wake(self: &Arc<Self>, pod: &str) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut workers = lock(&self.workers);
        let tx = workers.entry(pod.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(1);
            let ctx = Arc::clone(self);
            let pod = pod.to_string();
            self.tasks.spawn(async move { ctx.worker(pod, rx).await });
            tx
        });
        let _ = tx.try_send(());
    }

    fn wake_after(self: &Arc<Self>, pod: &str, delay: Duration) {
        let ctx = Arc::clone(self);
        let pod = pod.to_string();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => ctx.wake(&pod),
            }
        });
    }

    pub(crate) fn wake_ingress(&self) {
        self.ingress_wake.notify_one();
    }

    async fn worker(self: Arc<Self>, pod: String, mut rx: mpsc::Receiver<()>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                msg = rx.recv() => if msg.is_none() { return },
            }
            let next = match self.reconcile(&pod).await {
                Ok(next) => {
                    if let Some(s) = lock(&self.status).get_mut(&pod) {
                        s.error_streak = 0;
                    }
                    next
                }
                Err(e) => {
                    tracing::warn!(pod, error = %e, "reconcile failed");
                    let streak = {
                        let mut status = lock(&self.status);
                        let s = status.entry(pod.clone()).or_default();
                        s.error_streak = s.error_streak.saturating_add(1);
                        s.message = Some(e.to_string());
                        s.error_streak
                    };
                    self.notify(Change::Pod { name: pod.clone() });
                    Next::Requeue(error_backoff(streak))
                }
            };
            match next {
                Next::Done => {}
                Next::Requeue(delay) if delay.is_zero() => self.wake(&pod),
                Next::Requeue(delay) => self.wake_after(&pod, delay),
                Next::Gone => {
                    let mut workers = lock(&self.workers);
                    if rx.is_empty() {
                        workers.remove(&pod);
                        lock(&self.status).remove(&pod);
                        return;
                    }
                }
            }
        }
    }

    /// Makes one pod's containers match its spec, from whatever state they are in.
    async fn reconcile(self: &Arc<Self>, pod: &str) -> Result<Next> {
        tracing::debug!(pod, "reconcile");
        let stored = self.store.get(pod).await?;
        let mut observed = self.list_pod(pod).await?;
        // The observed cache may have changed (e.g. a drained replica is gone):
        // the change feed re-reads the pod and publishes only if its view differs.
        self.notify(Change::Pod { name: pod.to_string() });
        // Replicas being drained are out of the ingress and about to stop: a
        // background task owns them (see `drain_and_stop`). The pod has not
        // landed until they are gone: that task wakes the pod when they are.
        let draining = observed.iter().any(|c| self.is_draining(&c.id));
        observed.retain(|c| !self.is_draining(&c.id));
        let Some(stored) = stored else {
            self.health.forget_pod(pod);
            lock(&self.rollouts).remove(pod);
            lock(&self.slots).remove(pod);
            let actions = plan(None, &observed);
            if actions.is_empty() {
                return Ok(Next::Gone);
            }
            self.execute(pod, None, &observed, actions).await?;
            self.notify(Change::Pod { name: pod.to_string() });
            return Ok(Next::Requeue(Duration::ZERO));
        };
        let spec = &stored.spec;
        self.sync_probes(pod, spec, &observed);
        let routed = self.ingress.routed();
        for c in &mut observed {
            c.ready = self.is_serving(c, spec) && (spec.host().is_none() || routed.contains(&c.id));
        }
        let strategy = spec.update_strategy();
        let revision = spec.revision_hash();
        let now = Instant::now();
        {
            // Every container still there keeps its slot, exited ones too:
            // their exit is booked when they are removed.
            let live: Vec<&str> = observed.iter().map(slot_of).collect();
            let backoff = self.backoff_for(Some(spec));
            if let Some(slots) = lock(&self.slots).get_mut(pod) {
                slots.retain_live(&live, now, backoff);
            }
        }
        let is_new = |c: &Observed| c.revision.as_deref() == Some(revision.as_str());
        // What the rollout has achieved, by the checks alone...
        let checked_new = observed.iter().filter(|c| c.ready && is_new(c)).count();
        let running_new = observed
            .iter()
            .filter(|c| is_new(c) && c.state == ContainerState::Running)
            .count();
        // ...and what the planner may trust: while other revisions still run,
        // a new replica counts only once it has been ready for `min_ready`.
        let (untrusted_old, trust_at) = gate(
            &mut observed,
            &revision,
            |id| self.health.state(id).and_then(|h| h.ready_since),
            strategy.min_ready,
            now,
        );
        let desired = Desired {
            replicas: spec.replicas,
            revision: revision.clone(),
            max_surge: strategy.max_surge,
            max_unavailable: strategy.max_unavailable,
        };
        let actions = plan_gated(Some(&desired), &observed, &untrusted_old);
        // Nothing left to do, and every replica current, ready and alone.
        let converged = actions.is_empty() && status::counts(spec, &observed, |c| c.ready, |_| false).converged();
        let progress = RolloutObservation {
            ready_new: checked_new,
            running_new,
            converged,
        };
        let recheck = match self.track_rollout(&stored, &observed, progress).await? {
            Ok(recheck) => recheck,
            Err(next) => return Ok(next),
        };
        if actions.is_empty() && draining {
            return Ok(Next::Done);
        }
        // A container the engine is still removing (ours raced another
        // removal, or a removal answered 409) is not gone yet: the pod lands
        // when it is. Its `destroy` event wakes the pod; the requeue is a
        // safety net.
        if actions.is_empty() && observed.iter().any(|c| c.state == ContainerState::Removing) {
            return Ok(Next::Requeue(Duration::from_secs(1)));
        }
        if actions.is_empty() {
            let changed = {
                let mut status = lock(&self.status);
                let s = status.entry(pod.to_string()).or_default();
                let changed = s.observed_generation != stored.generation || s.message.is_some();
                s.observed_generation = stored.generation;
                if s.next_allowed.is_none_or(|t| t <= Instant::now()) {
                    s.reason = None;
                    s.message = None;
                }
                changed
            };
            if changed {
                self.notify(Change::Pod { name: pod.to_string() });
            }
            // A rollout in progress is re-checked at its deadline, and when a
            // new replica's stabilization window ends, even without events.
            let at = match (recheck, trust_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Ok(match at {
                Some(at) => Next::Requeue(at.saturating_duration_since(Instant::now()) + Duration::from_millis(20)),
                None => Next::Done,
            });
        }
        let next = self.execute(pod, Some(&stored), &observed, actions).await?;
        self.notify(Change::Pod { name: pod.to_string() });
        Ok(next)
    }

    /// The readiness-check state of a replica, if its pod has a check.
    pub(crate) fn health_state(&self, id: &str) -> Option<crate::health::ProbeState> {
        self.health.state(id)
    }

    /// Running, on the network, not draining, and passing its readiness check
    /// (the pod's `health`, or a TCP connect to its port by default).
    pub(crate) fn is_serving(&self, c: &Observed, _spec: &PodSpec) -> bool {
        let probe = status::ReplicaProbe {
            ready: self.health.state(&c.id).is_some_and(|h| h.ready),
            last_error: None,
            draining: self.is_draining(&c.id),
        };
        status::is_serving(c, &probe)
    }

    fn sync_probes(self: &Arc<Self>, pod: &str, spec: &PodSpec, observed: &[Observed]) {
        let targets: Vec<Target> = observed
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter_map(|c| {
                Some(Target {
                    id: c.id.clone(),
                    ip: c.ip.as_deref()?.parse().ok()?,
                    port: c.labels.get(LABEL_PORT)?.parse().ok()?,
                })
            })
            .collect();
        let ctx = Arc::clone(self);
        let pod_name = pod.to_string();
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            ctx.wake(&pod_name);
            ctx.wake_ingress();
        });
        let host = spec.host().unwrap_or("localhost");
        let check = spec.readiness();
        self.health.sync(
            pod,
            Some(&check),
            host,
            &targets,
            &self.tasks,
            &self.shutdown,
            on_change,
        );
    }

    /// Rollout bookkeeping: completes the current revision once it is fully
    /// rolled out, and fails it (rolling back) when it made no progress for its
    /// deadline or its replicas exited `max_failures` times (see
    /// [`rollout::step`]). `Ok(when)` goes on (and looks again at `when`);
    /// `Err(next)` stops the reconcile here.
    async fn track_rollout(
        self: &Arc<Self>,
        stored: &StoredPod,
        observed: &[Observed],
        obs: RolloutObservation,
    ) -> Result<std::result::Result<Option<Instant>, Next>> {
        let pod = stored.spec.name.as_str();
        if !stored.rollout.is_progressing() {
            lock(&self.rollouts).remove(pod);
            return Ok(Ok(None));
        }
        let number = stored.rollout.number;
        let strategy = stored.spec.update_strategy();
        let limits = Limits {
            progress_deadline: strategy.progress_deadline,
            max_failures: strategy.max_failures,
        };
        let now = Instant::now();
        let (verdict, state) = {
            let mut rollouts = lock(&self.rollouts);
            let r = rollouts
                .entry(pod.to_string())
                .or_insert_with(|| Progress::new(number, now));
            if r.number != number {
                *r = Progress::new(number, now);
            }
            (rollout::step(r, obs, limits, now), r.clone())
        };
        let reason = match verdict {
            Verdict::Continue { recheck } => return Ok(Ok(Some(recheck))),
            Verdict::Complete => {
                lock(&self.rollouts).remove(pod);
                if self.store.complete_revision(pod, number).await? {
                    self.event(
                        pod,
                        "Normal",
                        "RolloutComplete",
                        &format!("revision {number} is fully rolled out"),
                    )
                    .await;
                    self.notify(Change::Pod { name: pod.to_string() });
                }
                return Ok(Ok(None));
            }
            Verdict::Fail(reason) => reason,
        };
        lock(&self.rollouts).remove(pod);
        let message = match reason {
            FailReason::ProgressDeadlineExceeded => {
                let cause = self.failure_cause(&stored.spec, observed);
                format!(
                    "revision {number} made no progress for {}: {} of {} new replicas ready; {cause}",
                    humantime::format_duration(limits.progress_deadline),
                    obs.ready_new,
                    stored.spec.replicas
                )
            }
            FailReason::ReplicasExiting => format!(
                "revision {number} failed fast: its replicas exited {} times (update.max_failures is {}); \
                 the old replicas kept serving. Last: {}",
                state.failures,
                limits.max_failures,
                state.last_failure.as_deref().unwrap_or("unknown")
            ),
        };
        match self
            .store
            .fail_and_roll_back(pod, number, reason.as_str(), &message)
            .await?
        {
            Some(good) => {
                // The failed revision's crash-loop state is not the rolled-back one's.
                {
                    let mut status = lock(&self.status);
                    if let Some(s) = status.get_mut(pod) {
                        s.reason = None;
                        s.message = None;
                        s.next_allowed = None;
                    }
                }
                lock(&self.slots).remove(pod);
                self.event(
                    pod,
                    "Warning",
                    "RolledBack",
                    &format!(
                        "{}: {message}; rolled back to revision {}",
                        reason.as_str(),
                        good.number
                    ),
                )
                .await;
            }
            None => {
                self.event(
                    pod,
                    "Warning",
                    "RolloutFailed",
                    &format!(
                        "{}: {message}; no earlier good revision to roll back to",
                        reason.as_str()
                    ),
                )
                .await;
            }
        }
        self.notify(Change::Pod { name: pod.to_string() });
        Ok(Err(Next::Requeue(Duration::ZERO)))
    }

    /// Why new replicas are not ready: the failing check or the last exit.
    fn failure_cause(&self, spec: &PodSpec, observed: &[Observed]) -> String {
        let revision = spec.revision_hash();
        let check_error = observed
            .iter()
            .filter(|c| c.revision.as_deref() == Some(&revision))
            .find_map(|c| self.health.state(&c.id).and_then(|h| h.last_error));
        if let Some(e) = check_error {
            return format!("readiness check failing: {e}");
        }
        let status = self.pod_status(&spec.name);
        match status.last_exit_code {
            Some(code) => format!("replicas exit with code {code} ({} restarts)", status.restarts),
            None => "replicas did not become ready".to_string(),
        }
    }

    async fn execute(
        self: &Arc<Self>,
        pod: &str,
        stored: Option<&StoredPod>,
        observed: &[Observed],
        actions: Vec<Action>,
    ) -> Result<Next> {
        let mut creates = 0u32;
        let mut starts = Vec::new();
        let mut quick_removes = Vec::new();
        let mut drains = Vec::new();
        let mut exited = Vec::new();
        for action in actions {
            match action {
                Action::Create { count } => creates += count,
                Action::Start { id } => starts.push(id),
                Action::Remove { id, running, reason } => {
                    if reason == RemoveReason::Exited
                        && let Some(c) = observed.iter().find(|c| c.id == id)
                    {
                        exited.push(c.clone());
                    }
                    if running {
                        drains.push((id, reason))
                    } else {
                        quick_removes.push((id, reason))
                    }
                }
            }
        }

        // Crash-loop bookkeeping: record why replicas died before they are removed.
        let now = Instant::now();
        let backoff = self.backoff_for(stored.map(|p| &p.spec));
        let revision = stored.map(|p| p.spec.revision_hash());
        let rolling = stored.is_some_and(|p| p.rollout.is_progressing());
        // Concurrently: a crash's log tail is one engine call each.
        join_all(
            exited
                .iter()
                .map(|c| self.record_exit(pod, c, backoff, now, rolling && c.revision == revision)),
        )
        .await;
        let mut delay_creates = None;
        let mut slots_for_creates = Vec::new();
        if creates > 0 {
            let (slots, wait) = {
                let mut all = lock(&self.slots);
                let slots = all.entry(pod.to_string()).or_default();
                slots.take(creates as usize, now, random_suffix)
            };
            slots_for_creates = slots;
            delay_creates = wait.map(|t| t.saturating_duration_since(now));
        }
        {
            let until = lock(&self.slots).get(pod).and_then(|s| s.backing_off_until(now));
            let mut status = lock(&self.status);
            let s = status.entry(pod.to_string()).or_default();
            s.next_allowed = until;
        }

        // Stopped containers are removed at once, concurrently with the
        // creation of their replacements (a replacement never waits for the
        // removal of the container it replaces).
        let removals = async {
            let removed = join_all(
                quick_removes
                    .iter()
                    .map(|(id, _)| self.with_slot(self.runtime.remove(id))),
            )
            .await;
            let mut errors: Vec<Error> = removed.into_iter().filter_map(Result::err).collect();
            for id in &starts {
                if let Err(e) = self.with_slot(self.runtime.start(id)).await {
                    errors.push(e);
                }
            }
            errors
        };
        let (removal_errors, mut errors) =
            tokio::join!(removals, self.create_replicas(pod, stored, &slots_for_creates));
        errors.extend(removal_errors);
        self.wake_ingress();

        // Running containers: out of the ingress first (the reload is live
        // before we go on), then drained and stopped in the background. The
        // pod's next reconcile does not count draining containers (they serve
        // nobody), so the next step of a rollout starts while they drain.
        if !drains.is_empty() {
            lock(&self.draining).extend(drains.iter().map(|(id, _)| id.clone()));
            if let Err(e) = self.sync_ingress().await {
                tracing::warn!(error = %e, "ingress sync before draining failed; stopping anyway");
            }
            let grace = stored
                .and_then(|p| p.spec.stop_grace_period)
                .unwrap_or(self.settings.stop_grace);
            let ids: Vec<String> = drains.iter().map(|(id, _)| id.clone()).collect();
            let ctx = Arc::clone(self);
            let pod_name = pod.to_string();
            self.tasks
                .spawn(async move { ctx.drain_and_stop(&pod_name, ids, grace).await });
        }
        let mut reasons: HashMap<&'static str, usize> = HashMap::new();
        for (_, reason) in drains.iter().chain(quick_removes.iter()) {
            if *reason != RemoveReason::Exited {
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
        }
        for (reason, n) in reasons {
            self.event(pod, "Normal", "Removed", &format!("removed {n} container(s): {reason}"))
                .await;
        }

        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        Ok(match delay_creates {
            Some(d) => Next::Requeue(d),
            None => Next::Requeue(Duration::ZERO),
        })
    }

    /// Books one exited replica: a crash (its own exit, or OOM) counts
    /// towards its slot's back-off and, for a replica of a revision being
    /// rolled out, towards the rollout's `max_failures`; a kill from outside
    /// is replaced at once.
    async fn record_exit(&self, pod: &str, c: &Observed, backoff: BackoffSettings, now: Instant, new_in_rollout: bool) {
        let cause = lock(&self.exit_notes)
            .remove(&c.id)
            .map(|(cause, _)| cause)
            .unwrap_or(ExitCause::Crash);
        let lived = Duration::from_secs((crate::store::now_ms() / 1000 - c.created).max(0) as u64);
        let decision =
            lock(&self.slots)
                .entry(pod.to_string())
                .or_default()
                .on_exit(slot_of(c), cause, lived, now, backoff);
        let code = c.exit_code().map(|c| c.to_string()).unwrap_or_else(|| "unknown".into());
        if !decision.crash {
            // Counted as a restart (as Kubernetes' restartCount), never as a crash.
            {
                let mut status = lock(&self.status);
                let s = status.entry(pod.to_string()).or_default();
                s.restarts = s.restarts.saturating_add(1);
                s.last_exit_code = c.exit_code();
            }
            let signal = match cause {
                ExitCause::Killed(Some(sig)) => format!(" (signal {sig})"),
                _ => String::new(),
            };
            self.event(
                pod,
                "Normal",
                "Killed",
                &format!(
                    "{} was killed or stopped from outside{signal}, exit code {code}; replaced at once",
                    c.name
                ),
            )
            .await;
            return;
        }
        // Only a quick exit may be a crash loop whose status shows the log
        // (one engine call fewer on a plain heal); a rollout's failure always
        // says why. Read before the status changes, so status and events move together.
        let mut log_tail = String::new();
        if new_in_rollout || lived < backoff.reset_after {
            log_tail = self.runtime.log_tail(&c.id, 10).await.unwrap_or_default();
        }
        let oom = if cause == ExitCause::Oom {
            ", killed for memory (OOM)"
        } else {
            ""
        };
        if new_in_rollout && let Some(r) = lock(&self.rollouts).get_mut(pod) {
            r.record_failure(format!(
                "{} exited with code {code}{oom}. Last log lines:\n{}",
                c.name,
                log_tail.trim_end()
            ));
        }
        let restarts = {
            let mut status = lock(&self.status);
            let s = status.entry(pod.to_string()).or_default();
            s.restarts = s.restarts.saturating_add(1);
            s.last_exit_code = c.exit_code();
            if !decision.delay.is_zero() {
                s.reason = Some("CrashLoopBackOff".into());
                s.message = Some(format!(
                    "replicas keep exiting (last exit code {code}{oom}); restarting in {:?}. Last log lines:\n{}",
                    decision.delay,
                    log_tail.trim_end()
                ));
            }
            s.restarts
        };
        self.event(
            pod,
            "Warning",
            "Exited",
            &format!(
                "{} exited (code {code}{oom}); restart #{restarts}{}",
                c.name,
                if decision.delay.is_zero() {
                    String::new()
                } else {
                    format!(", back-off {:?}", decision.delay)
                }
            ),
        )
        .await;
    }

    /// Creates and starts one replica of the pod's current revision for each
    /// of `slots`, all at once (bounded by the engine semaphore). Returns the errors.
    async fn create_replicas(self: &Arc<Self>, pod: &str, stored: Option<&StoredPod>, slots: &[String]) -> Vec<Error> {
        let mut errors = Vec::new();
        let Some(stored) = stored.filter(|_| !slots.is_empty()) else {
            return errors;
        };
        match self.runtime.ensure_image(&stored.spec.image).await {
            Ok(()) => {
                let template = self.template(stored);
                let results = join_all(slots.iter().map(|slot| {
                    let mut t = template.clone();
                    t.labels.insert(LABEL_SLOT.to_string(), slot.clone());
                    t.name = format!("dub-{}-{}-{}", self.settings.instance, pod, random_suffix());
                    async move { self.with_slot(self.runtime.create_replica(&t)).await.map(|_| t.name) }
                }))
                .await;
                let mut made = Vec::new();
                for r in results {
                    match r {
                        Ok(name) => made.push(name),
                        Err(e) => errors.push(e),
                    }
                }
                if !made.is_empty() {
                    self.event(
                        pod,
                        "Normal",
                        "Created",
                        &format!(
                            "created {} replica(s) of revision {}",
                            made.len(),
                            template.labels.get(LABEL_REVISION).map(String::as_str).unwrap_or("")
                        ),
                    )
                    .await;
                }
            }
            Err(e) => {
                {
                    let mut status = lock(&self.status);
                    let s = status.entry(pod.to_string()).or_default();
                    s.reason = Some("ImageUnavailable".into());
                }
                self.event(pod, "Warning", "ImageUnavailable", &e.to_string()).await;
                errors.push(e);
            }
        }
        errors
    }

    /// Lets nginx's old workers finish what they were sending to these
    /// (already unrouted) replicas, stops them gracefully, and wakes the pod.
    async fn drain_and_stop(self: Arc<Self>, pod: &str, ids: Vec<String>, grace: Duration) {
        if !self.settings.drain.is_zero() {
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(self.settings.drain) => {}
            }
        }
        // The stop waits out the grace period without an engine slot (the
        // engine does the waiting); only the removal takes one.
        let ctx = &self;
        let stopped = join_all(ids.iter().map(|id| async move {
            ctx.runtime.stop(id, grace).await?;
            ctx.with_slot(ctx.runtime.remove(id)).await
        }))
        .await;
        {
            let mut draining = lock(&self.draining);
            for id in &ids {
                draining.remove(id);
            }
        }
        for e in stopped.into_iter().filter_map(Result::err) {
            tracing::warn!(pod, error = %e, "stopping a drained replica failed; the next reconcile retries");
        }
        self.wake(pod);
    }

    /// The server's back-off settings with the pod's overrides.
    fn backoff_for(&self, spec: Option<&PodSpec>) -> BackoffSettings {
        let mut b = self.settings.backoff;
        if let Some(r) = spec.and_then(|s| s.restart.as_ref()) {
            b.initial = r.initial_delay.unwrap_or(b.initial);
            b.max = r.max_delay.unwrap_or(b.max);
            b.reset_after = r.reset_after.unwrap_or(b.reset_after);
        }
        b
    }

    async fn with_slot<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let _permit = self.engine_slots.acquire().await.map_err(|_| Error::ShuttingDown)?;
        call.await
    }

    fn template(&self, stored: &StoredPod) -> ReplicaTemplate {
        let spec = &stored.spec;
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.settings.instance.clone()),
            (LABEL_POD.to_string(), spec.name.clone()),
            (LABEL_REVISION.to_string(), spec.revision_hash()),
            (LABEL_ROLE.to_string(), "replica".to_string()),
            (LABEL_PORT.to_string(), spec.port.to_string()),
        ]);
        ReplicaTemplate {
            name: String::new(),
            image: spec.image.clone(),
            port: spec.port,
            env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            command: spec.command.clone(),
            args: spec.args.clone(),
            memory: spec.memory_bytes(),
            cpus: spec.resources.as_ref().and_then(|r| r.cpus),
            labels,
            network: self.settings.network.clone(),
            limits: spec.container_limits(),
        }
    }

    async fn event(&self, pod: &str, kind: &str, reason: &str, message: &str) {
        tracing::info!(pod, kind, reason, message);
        if let Err(e) = self.store.record_event(pod, kind, reason, message).await {
            tracing::warn!(error = %e, "recording an event failed");
        }
        // Watchers learn of the new event through the change feed.
        self.notify(Change::Pod { name: pod.to_string() });
    }

    /// Computes the routes from the store and the engine and makes the ingress
    /// serve them. Serialized: routes are computed and applied under one lock,
    /// so an older computation can never be applied after a newer one (which
    /// could route to a replica that is being drained).
    pub(crate) async fn sync_ingress(self: &Arc<Self>) -> Result<()> {
        let _one_at_a_time = self.ingress_sync.lock().await;
        let pods = self.store.list().await?;
        let containers = self.list_instance().await?;
        let routes = self.routes(&pods, &containers);
        let ingress: Vec<&Observed> = containers.iter().filter(|c| c.role == "ingress").collect();
        let started = Instant::now();
        let result = self.ingress.sync(&routes, &ingress).await;
        tracing::debug!(took = ?started.elapsed(), changed = ?result.as_ref().ok(), "ingress sync");
        *lock(&self.ingress_error) = result.as_ref().err().map(ToString::to_string);
        // Routes nginx rejected are reported against their pods (status and an event).
        for (pod, change) in self.ingress.take_rejection_changes() {
            match change {
                crate::ingress::RejectionChange::Rejected(message) => {
                    let message =
                        format!("nginx rejected this pod's route; the other pods' routes were applied: {message}");
                    self.event(&pod, "Warning", "IngressRejected", &message).await;
                }
                crate::ingress::RejectionChange::Cleared => self.notify(Change::Pod { name: pod }),
            }
        }
        if result? {
            self.notify(Change::Ingress);
            // Pods whose routed replicas changed may now make progress (a rollout step).
            let changed: Vec<String> = {
                let mut last = lock(&self.last_routes);
                let now: HashMap<String, Vec<String>> = routes.iter().map(|r| (r.pod.clone(), r.ids.clone())).collect();
                let changed = now
                    .iter()
                    .filter(|(pod, ids)| last.get(*pod) != Some(*ids))
                    .map(|(pod, _)| pod.clone())
                    .collect();
                *last = now;
                changed
            };
            for pod in changed {
                self.wake(&pod);
            }
        }
        Ok(())
    }

    fn routes(&self, pods: &[StoredPod], containers: &[Observed]) -> Vec<Route> {
        pods.iter()
            .filter_map(|p| {
                let host = p.spec.host()?;
                let servers = containers
                    .iter()
                    .filter(|c| c.role == "replica" && c.pod.as_deref() == Some(p.spec.name.as_str()))
                    .filter(|c| self.is_serving(c, &p.spec))
                    .filter_map(|c| {
                        let ip: IpAddr = c.ip.as_deref()?.parse().ok()?;
                        let port: u16 = c.labels.get(LABEL_PORT)?.parse().ok()?;
                        Some(((ip, port), c.id.clone()))
                    })
                    .collect();
                Some(Route::with_ids(&p.spec.name, host, servers))
            })
            .collect()
    }

    /// Runs the controller's long-lived tasks: ingress, events, resync.
    pub(crate) fn start(self: &Arc<Self>) {
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.ingress_loop().await });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.event_loop().await });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.resync_loop().await });
    }

    /// Applies route changes, coalescing bursts: wakes that arrive while a
    /// sync runs collapse into one more sync. A change and the one that
    /// follows it (a replica dies, its replacement starts) are applied at
    /// once; from the third sync in a row on, each first waits a cool-down
    /// (half the last sync's duration, at most [`MAX_INGRESS_COOLDOWN`]) so
    /// that more changes of a burst share its reload, and reloads never take
    /// more than about two thirds of the time.
    async fn ingress_loop(self: Arc<Self>) {
        let mut streak = 0u32;
        let mut last_end: Option<Instant> = None;
        let mut cooldown = Duration::ZERO;
        // The previous sync started right after the one before it.
        let mut chained = false;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.ingress_wake.notified() => {}
            }
            let back_to_back = last_end.is_some_and(|end| end.elapsed() < Duration::from_millis(20));
            if back_to_back && chained {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(cooldown) => {}
                }
            }
            chained = back_to_back;
            let started = Instant::now();
            let result = self.sync_ingress().await;
            cooldown = (started.elapsed() / 2).min(MAX_INGRESS_COOLDOWN);
            last_end = Some(Instant::now());
            match result {
                Ok(()) => streak = 0,
                Err(e) => {
                    streak = streak.saturating_add(1);
                    tracing::warn!(error = %e, "ingress sync failed");
                    let ctx = Arc::clone(&self);
                    let delay = error_backoff(streak);
                    self.tasks.spawn(async move {
                        tokio::select! {
                            _ = ctx.shutdown.cancelled() => {}
                            _ = tokio::time::sleep(delay) => ctx.wake_ingress(),
                        }
                    });
                }
            }
        }
    }

    async fn event_loop(self: Arc<Self>) {
        let mut streak = 0u32;
        loop {
            let mut events = self.runtime.events(&self.settings.instance);
            // Anything that happened while the stream was down is caught by a resync.
            if streak > 0 {
                self.resync().await;
            }
            loop {
                let next = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    next = events.next() => next,
                };
                match next {
                    Some(Ok(event)) => {
                        streak = 0;
                        let action = event.action.unwrap_or_default();
                        let actor_id = event.actor.as_ref().and_then(|a| a.id.clone());
                        let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                        let event = DieEvent { actor_id };
                        tracing::debug!(
                            action,
                            pod = attributes.get(LABEL_POD).map(String::as_str),
                            "docker event"
                        );
                        let relevant = [
                            "start",
                            "die",
                            "destroy",
                            "stop",
                            "kill",
                            "oom",
                            "pause",
                            "unpause",
                            "health_status",
                        ]
                        .iter()
                        .any(|a| action.starts_with(a));
                        if !relevant {
                            continue;
                        }
                        if let (Some(id), Some(_)) = (event.actor_id.as_deref(), attributes.get(LABEL_POD)) {
                            // The engine reports `kill` (with the signal) before the `die`
                            // of a `docker kill`, `docker stop` or `docker rm -f`; an app's
                            // own exit has none. Our own stops are of draining replicas.
                            if action.starts_with("kill") && !self.is_draining(id) {
                                let signal = attributes.get("signal").and_then(|s| s.parse().ok());
                                self.note_exit(id, ExitCause::Killed(signal));
                            } else if action.starts_with("oom") {
                                self.note_exit(id, ExitCause::Oom);
                            }
                        }
                        if let Some(pod) = attributes.get(LABEL_POD) {
                            if action.starts_with("die") || action.starts_with("oom") {
                                // The engine emits `die` before its container list shows the
                                // container as exited; an inspect waits for the container's lock,
                                // so after it the list agrees. Then wake the pod.
                                // Watchers see the exited replica at once, before the
                                // reconcile replaces it: the cache is marked from the event.
                                if let Some(id) = event.actor_id.as_deref() {
                                    lock(&self.observed).mark_exited(pod, id);
                                    self.notify(Change::Pod { name: pod.clone() });
                                }
                                let ctx = Arc::clone(&self);
                                let pod = pod.clone();
                                let id = event.actor_id.clone();
                                self.tasks.spawn(async move {
                                    if let Some(id) = id {
                                        let _ = ctx.runtime.inspect_state(&id).await;
                                    }
                                    ctx.wake(&pod);
                                });
                            } else {
                                self.notify(Change::Pod { name: pod.clone() });
                                self.wake(pod);
                            }
                        }
                        self.wake_ingress();
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "docker event stream failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
            streak = streak.saturating_add(1);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(error_backoff(streak)) => {}
            }
        }
    }

    /// Remembers why a replica is about to die (an OOM kill wins over a kill).
    fn note_exit(&self, id: &str, cause: ExitCause) {
        let now = Instant::now();
        let mut notes = lock(&self.exit_notes);
        // Notes of containers that were removed without an exit to book
        // (`docker rm -f`) are dropped after a while.
        notes.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(600));
        if cause != ExitCause::Oom && notes.get(id).is_some_and(|(c, _)| *c == ExitCause::Oom) {
            return;
        }
        notes.insert(id.to_string(), (cause, now));
    }

    async fn resync_loop(self: Arc<Self>) {
        loop {
            self.resync().await;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.resync) => {}
            }
        }
    }

    /// One container list for the whole instance; wakes every pod whose plan
    /// is not empty, and every pod that owns containers but is not stored.
    pub(crate) async fn resync(self: &Arc<Self>) {
        let (pods, containers) = match (self.store.list().await, self.list_instance().await) {
            (Ok(p), Ok(c)) => (p, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "resync failed");
                return;
            }
        };
        let mut by_pod: HashMap<&str, Vec<Observed>> = HashMap::new();
        for c in containers.iter().filter(|c| c.role == "replica") {
            if let Some(pod) = c.pod.as_deref() {
                by_pod.entry(pod).or_default().push(c.clone());
            }
        }
        for p in &pods {
            let observed = by_pod.remove(p.spec.name.as_str()).unwrap_or_default();
            let strategy = p.spec.update_strategy();
            let desired = Desired {
                replicas: p.spec.replicas,
                revision: p.spec.revision_hash(),
                max_surge: strategy.max_surge,
                max_unavailable: strategy.max_unavailable,
            };
            let settled = plan(Some(&desired), &observed).is_empty();
            if status::needs_reconcile(settled, self.pod_status(&p.spec.name).observed_generation, p.generation) {
                self.wake(&p.spec.name);
            }
        }
        for orphan in by_pod.keys() {
            self.wake(orphan);
        }
        self.ingress.verify().await;
        self.wake_ingress();
    }
}

struct DieEvent {
    actor_id: Option<String>,
}

/// The replica slot a container fills: its label, or (for replicas made
/// before slots existed) its own id.
fn slot_of(c: &Observed) -> &str {
    c.labels.get(LABEL_SLOT).map(String::as_str).unwrap_or(c.id.as_str())
}

/// Longest pause between two ingress syncs of a burst.
const MAX_INGRESS_COOLDOWN: Duration = Duration::from_millis(500);

fn error_backoff(streak: u32) -> Duration {
    let exp = streak.saturating_sub(1).min(6);
    Duration::from_millis(500u64 << exp).min(Duration::from_secs(30))
}

fn random_suffix() -> String {
    (0..6)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36usize)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_is_bounded() {
        assert_eq!(error_backoff(1), Duration::from_millis(500));
        assert_eq!(error_backoff(100), Duration::from_secs(30));
    }
}
