//! The controller: observe (list containers by label) → plan (pure) → act,
//! per pod, level-triggered and edge-woken. One idea per file:
//!
//! - [`queue`]: keyed work queue (coalesced wakes, deduplicated delayed requeues);
//! - [`reconcile`]: one pod's observe → plan → act, returning when to look
//!   again, and the error policy;
//! - [`observe`]: the observed-state cache and readiness of replicas;
//! - [`act`]: executing a plan's actions; [`drain`]: taking running replicas
//!   out gracefully; [`exits`]: booking exits (crash-loop back-off);
//! - [`progress`]: rollout bookkeeping around the pure [`crate::rollout`];
//!   [`hooks`]: deploy hooks (`pre_deploy` before a revision's replicas, `post_deploy` after);
//! - [`ingress_sync`]: routes and the coalescing ingress task;
//! - [`events`]: decoding the engine's event stream; [`resync`]: the periodic safety net;
//! - [`expiry`]: Warning events before and at a TLS secret's expiry.
//!
//! The decisions themselves are pure and live beside the planner:
//! [`crate::plan`], [`crate::rollout`], [`crate::crashloop`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use crate::change::Change;
pub use crate::crashloop::BackoffSettings;
use crate::crashloop::{ExitCause, LABEL_SLOT, Slots};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::ingress::Ingress;
use crate::owned_engine::{Observed, Runtime};
use crate::rollout::Progress;
use crate::spec::PodSpec;
use crate::store::Store;
use crate::sync::lock;

mod acme_host;
mod act;
mod drain;
mod events;
mod exits;
mod expiry;
mod hooks;
mod ingress_sync;
mod instrument;
mod names_sync;
mod observe;
mod one_off;
mod progress;
mod queue;
mod reconcile;
mod resync;
mod secret_material;
#[cfg(test)]
mod tests;

/// What the controller's files share.
mod prelude {
    pub(super) use std::collections::HashMap;
    pub(super) use std::net::IpAddr;
    pub(super) use std::sync::Arc;
    pub(super) use std::time::Duration;

    pub(super) use futures::StreamExt;
    pub(super) use futures::future::join_all;
    pub(super) use tokio::time::Instant;

    pub(super) use super::{BackoffSettings, Change, Context, Next, error_backoff, random_suffix, slot_of};
    pub(super) use crate::crashloop::{ExitCause, LABEL_SLOT};
    pub(super) use crate::error::{Error, Result};
    pub(super) use crate::ingress::Route;
    pub(super) use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_PORT, LABEL_REVISION, LABEL_ROLE};
    pub(super) use crate::owned_engine::{ContainerSpec, Observed};
    pub(super) use crate::plan::{Action, Desired, RemoveReason, plan};
    pub(super) use crate::spec::PodSpec;
    pub(super) use crate::store::StoredPod;
    pub(super) use crate::sync::lock;
}

use observe::ObservedCache;
pub(crate) use one_off::OneOff;

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
    /// Create failures (a pull, a secret, a volume, placement) of a spec
    /// older than this one, as (created_at, generation) of its stored pod,
    /// are stale: a pull of the previous spec that fails after the apply must
    /// not mark the new one failed (created_at tells a pod deleted and
    /// applied again, whose generations start over).
    pub create_failures_from: (i64, i64),
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
    /// Seals and opens secret values.
    pub vault: crate::vault::Vault,
    /// Where the files of `secret_files` are written for the engine to bind
    /// (None: no data dir, so no secret files on the docker backend).
    pub secret_files_dir: Option<std::path::PathBuf>,
    /// The name responder's fixed address (None: pods get no names).
    pub names_address: Option<std::net::IpAddr>,
    /// The name responder's image.
    pub names_image: String,
}

pub(crate) struct Context {
    pub settings: ControllerSettings,
    pub store: Arc<dyn Store>,
    pub runtime: Runtime,
    pub ingress: Ingress,
    /// The instance's name responder (see [`crate::names`]).
    pub names: crate::names::Names,
    names_wake: Notify,
    /// The next names sync looks at the responder's container (an engine
    /// event of a container that is not a replica: it may be the responder's).
    names_check: std::sync::atomic::AtomicBool,
    pub changes: broadcast::Sender<Change>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// What the controller keeps per pod between reconciles. A std mutex,
    /// as every lock here but `ingress_sync` (see [`crate::sync`]): never
    /// held across an `.await`.
    book: StdMutex<PodBook>,
    queue: queue::WorkQueue,
    engine_slots: Semaphore,
    ingress_wake: Notify,
    /// The next ingress sync lists the engine (see [`Context::wake_ingress_full`]).
    ingress_full: std::sync::atomic::AtomicBool,
    health: Health,
    /// One ingress sync at a time. A tokio mutex: held across the whole
    /// sync, which awaits the engine (render, `nginx -t`, reload).
    ingress_sync: tokio::sync::Mutex<()>,
    /// What the ingress routes, as the syncs and a new term leave it (std).
    routing: StdMutex<Routing>,
    /// What the engine showed last, kept by the observations and the engine
    /// events (std: see [`crate::sync`]).
    observed: StdMutex<ObservedCache>,
    list_seq: AtomicU64,
    /// Certificates by ACME, when the instance has an ACME directory.
    pub acme: std::sync::OnceLock<Arc<crate::acme::Acme>>,
}

/// What the controller keeps per pod between reconciles: written by the
/// pod's reconcile (act, exits, progress, drain), by the engine events
/// (`exit_notes`) and read by the status views. One lock, taken for a few
/// map operations at a time and never held across an `.await` or while
/// another lock of the context is taken.
#[derive(Default)]
struct PodBook {
    /// The pod's controller status (reason, restarts, back-off), by pod.
    status: HashMap<String, PodRuntimeStatus>,
    /// The progress of each pod's rollout, by pod.
    rollouts: HashMap<String, Progress>,
    /// Crash-loop back-off per replica slot, by pod.
    slots: HashMap<String, Slots>,
    /// Replicas (container ids) being drained: unrouted, not counted.
    draining: HashSet<String>,
    /// Why replicas stopped, from the engine's `kill` and `oom` events, by
    /// container id; read when the exited replica is removed.
    exit_notes: HashMap<String, (ExitCause, Instant)>,
    /// By pod, the last expiry warning recorded for its TLS secret (secret,
    /// end of validity, stage): each is recorded once.
    expiry_reported: HashMap<String, (String, i64, crate::certificate::Expiry)>,
}

/// What the ingress routes, written by the ingress syncs and a new term.
struct Routing {
    /// By pod, the replicas the ingress routed at the last sync.
    last: HashMap<String, Vec<String>>,
    /// Why the last ingress sync failed, if it did.
    error: Option<String>,
    /// Replicas (12-character ids) the previous leader last saw ready: they
    /// stay routable in this term until their first probe fails or confirms
    /// them, so a takeover does not empty the ingress while probes start.
    inherited_ready: (HashSet<String>, Instant),
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
        changes: broadcast::Sender<Change>,
    ) -> Arc<Context> {
        let health = Health::new(runtime.network());
        let names = crate::names::Names::new(
            runtime.clone(),
            &settings.instance,
            &settings.network,
            settings.names_address,
            &settings.names_image,
        );
        Arc::new(Context {
            names,
            names_wake: Notify::new(),
            names_check: std::sync::atomic::AtomicBool::new(true),
            engine_slots: Semaphore::new(settings.engine_concurrency.max(1)),
            settings,
            store,
            runtime,
            ingress,
            changes,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            book: StdMutex::new(PodBook::default()),
            queue: queue::WorkQueue::default(),
            ingress_wake: Notify::new(),
            ingress_full: std::sync::atomic::AtomicBool::new(true),
            health,
            ingress_sync: tokio::sync::Mutex::new(()),
            routing: StdMutex::new(Routing {
                last: HashMap::new(),
                error: None,
                inherited_ready: (HashSet::new(), Instant::now()),
            }),
            observed: StdMutex::new(ObservedCache::default()),
            list_seq: AtomicU64::new(0),
            acme: std::sync::OnceLock::new(),
        })
    }

    /// Takes over the readiness the previous leader last published (ids of
    /// 12 characters), before [`Context::start`].
    pub(crate) fn inherit_ready(&self, ids: HashSet<String>) {
        // Trusted at once (see `inherited_since`): ready long before this term.
        let now = Instant::now();
        let since = now.checked_sub(Duration::from_secs(24 * 3600)).unwrap_or(now);
        lock(&self.routing).inherited_ready = (ids, since);
    }

    pub(crate) fn is_draining(&self, id: &str) -> bool {
        lock(&self.book).draining.contains(id)
    }

    pub(crate) fn ingress_error(&self) -> Option<String> {
        lock(&self.routing).error.clone()
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
        if let Some(rx) = self.queue.wake(pod) {
            let ctx = Arc::clone(self);
            let pod = pod.to_string();
            self.tasks.spawn(async move { ctx.worker(pod, rx).await });
        }
    }

    /// Wakes the ingress sync. It routes from the observed cache (no engine
    /// call but the endpoint write) while the ingress container and its
    /// config are as it left them.
    pub(crate) fn wake_ingress(&self) {
        self.ingress_wake.notify_one();
        // Names follow readiness as routes do.
        self.names_wake.notify_one();
    }

    /// Wakes the ingress sync for a full one: a fresh list of the instance
    /// (the ingress container itself may have changed: an engine event of
    /// it, the periodic resync, a failed sync).
    pub(crate) fn wake_ingress_full(&self) {
        self.ingress_full.store(true, std::sync::atomic::Ordering::SeqCst);
        self.ingress_wake.notify_one();
        self.names_check.store(true, std::sync::atomic::Ordering::SeqCst);
        self.names_wake.notify_one();
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

    pub(crate) async fn event(&self, pod: &str, kind: &str, reason: &str, message: &str) {
        tracing::info!(pod, kind, reason, message);
        if let Err(e) = self.store.record_event(pod, kind, reason, message).await {
            tracing::warn!(error = %e, "recording an event failed");
        }
        // Watchers learn of the new event through the change feed.
        self.notify(Change::Pod { name: pod.to_string() });
    }

    /// Runs the controller's long-lived tasks: ingress, events, resync, and
    /// the timer of delayed requeues.
    pub(crate) fn start(self: &Arc<Self>) {
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    pod = ctx.queue.next_due() => ctx.wake(&pod),
                }
            }
        });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.ingress_loop().await });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.names_loop().await });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.event_loop().await });
        let ctx = Arc::clone(self);
        self.tasks.spawn(async move { ctx.resync_loop().await });
        if let Some(acme) = self.acme.get() {
            let (acme, ctx) = (Arc::clone(acme), Arc::clone(self));
            self.tasks.spawn(async move { acme.run(ctx).await });
        }
    }
}

/// The replica slot a container fills: its label, or (for replicas made
/// before slots existed) its own id.
fn slot_of(c: &Observed) -> &str {
    c.labels.get(LABEL_SLOT).map(String::as_str).unwrap_or(c.id.as_str())
}

/// The error policy's delay: 0.5 s after one failure, doubling, at most 30 s.
fn error_backoff(streak: u32) -> Duration {
    let exp = streak.saturating_sub(1).min(6);
    Duration::from_millis(500u64 << exp).min(Duration::from_secs(30))
}

fn random_suffix() -> String {
    (0..6)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36usize)]))
        .collect()
}
