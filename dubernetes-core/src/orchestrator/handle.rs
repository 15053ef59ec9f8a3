//! What outlives a leadership term ([`Handle`]) and the terms themselves:
//! a fresh controller context per term, fenced by the term's token.

use super::*;

/// A term's controller context and the token that fences its runtime.
type Term = (Arc<Context>, tokio_util::sync::CancellationToken);

/// What outlives a leadership term: the store, the engine connection, the
/// change broadcast, and the controller context of the current term.
///
/// A term is one [`Context`]: made fresh when this server becomes the
/// leader (so it starts from what the engine shows, never from what an
/// earlier term meant to do), with a runtime fenced by the term's token.
/// A server that does not lead holds a context that never starts (its
/// shutdown token is cancelled at birth, so nothing wakes a reconcile).
/// With SQLite there is one term, from build to shutdown.
pub(crate) struct Handle {
    pub(crate) settings: crate::controller::ControllerSettings,
    pub(crate) store: Arc<dyn crate::store::Store>,
    /// The engine, unfenced: reads (logs, lists) on any server.
    pub(crate) runtime: Runtime,
    pub(crate) ingress: crate::ingress::IngressSettings,
    pub(crate) changes: tokio::sync::broadcast::Sender<Change>,
    /// Certificates by ACME (one for every term: its errors and back-off
    /// outlive a change of leader); None: no ACME directory.
    pub(crate) acme: Option<Arc<crate::acme::Acme>>,
    /// Ends the handle's own tasks (feed, leadership, listener).
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// The current term's context and its fence.
    current: std::sync::RwLock<Term>,
    leader: tokio::sync::watch::Sender<bool>,
}

impl Handle {
    pub(crate) fn new(
        settings: crate::controller::ControllerSettings,
        store: Arc<dyn crate::store::Store>,
        runtime: Runtime,
        ingress: crate::ingress::IngressSettings,
        acme: Option<Arc<crate::acme::Acme>>,
    ) -> Handle {
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let standby = new_context(&settings, &store, &runtime, &ingress, &changes, acme.as_ref(), false);
        Handle {
            settings,
            store,
            runtime,
            ingress,
            changes,
            acme,
            shutdown: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            current: std::sync::RwLock::new(standby),
            leader: tokio::sync::watch::channel(false).0,
        }
    }

    pub(super) fn context(&self, acting: bool) -> Term {
        new_context(
            &self.settings,
            &self.store,
            &self.runtime,
            &self.ingress,
            &self.changes,
            self.acme.as_ref(),
            acting,
        )
    }

    /// Makes `next` the current term; returns the one it replaces.
    pub(super) fn swap(&self, next: Term) -> Term {
        std::mem::replace(&mut *self.current.write().unwrap_or_else(|e| e.into_inner()), next)
    }

    /// The current term's context.
    pub(crate) fn ctx(&self) -> Arc<Context> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()).0)
    }

    /// Whether this server leads (acts on the engine) now.
    pub(crate) fn leading(&self) -> bool {
        *self.leader.borrow()
    }

    /// Becomes the leader: a fresh controller context starts from what the
    /// engine shows (resync, adoption of what runs, the ingress as it is).
    pub(crate) async fn begin_term(&self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let (ctx, fence) = self.context(true);
        if let Some(pg) = self.store.postgres() {
            ctx.inherit_ready(inherited_ready(pg).await);
            // The ingress first: the planner counts only routed replicas as
            // ready, and would otherwise see the running ones as unready and
            // replace them. This delivers the routes the old leader served.
            if let Err(e) = ctx.sync_ingress().await {
                tracing::warn!(error = %e, "the first ingress sync of this term failed; the controller retries it");
            }
        }
        let (_, old_fence) = self.swap((Arc::clone(&ctx), fence));
        old_fence.cancel();
        ctx.start();
        self.leader.send_replace(true);
        // Every pod's view may change (this server now observes them).
        let _ = self.changes.send(Change::Ingress);
    }

    /// Stops leading: the fence cuts every engine call of the term at once
    /// (before the database can give the lock to another server), then the
    /// term's tasks are stopped and awaited (at most `wait`).
    pub(crate) async fn end_term(&self, wait: Duration) {
        let (old, fence) = self.swap(self.context(false));
        fence.cancel();
        self.leader.send_replace(false);
        old.shutdown.cancel();
        old.tasks.close();
        if tokio::time::timeout(wait, old.tasks.wait()).await.is_err() {
            tracing::warn!("the ended term's tasks did not stop in {wait:?}; they act on nothing (fenced)");
        }
        let _ = self.changes.send(Change::Ingress);
    }

    /// Waits until this server leads or stops leading.
    pub(crate) fn leader_changes(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.subscribe()
    }
}

/// The replicas the last published views show ready (12-character ids).
pub(super) async fn inherited_ready(pg: &crate::store::postgres::PgStore) -> std::collections::HashSet<String> {
    match pg.views().await {
        Ok(views) => views
            .iter()
            .filter_map(|(_, json)| serde_json::from_str::<Pod>(json).ok())
            .flat_map(|pod| pod.replicas.into_iter().filter(|r| r.ready).map(|r| r.id))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the previous leader's views failed; probes start from scratch");
            std::collections::HashSet::new()
        }
    }
}

/// A new controller context: acting (its runtime fenced by a new token), or
/// standing by (never started: nothing wakes a reconcile).
pub(super) fn new_context(
    settings: &crate::controller::ControllerSettings,
    store: &Arc<dyn crate::store::Store>,
    runtime: &Runtime,
    ingress: &crate::ingress::IngressSettings,
    changes: &tokio::sync::broadcast::Sender<Change>,
    acme: Option<&Arc<crate::acme::Acme>>,
    acting: bool,
) -> Term {
    let fence = tokio_util::sync::CancellationToken::new();
    let runtime = if acting {
        runtime.fenced(fence.clone())
    } else {
        runtime.clone()
    };
    let ingress = crate::ingress::Ingress::new(runtime.clone(), &settings.instance, &settings.network, ingress.clone());
    let ctx = Context::new(settings.clone(), Arc::clone(store), runtime, ingress, changes.clone());
    if let Some(acme) = acme {
        let _ = ctx.acme.set(Arc::clone(acme));
    }
    if !acting {
        ctx.shutdown.cancel();
    }
    (ctx, fence)
}
